"""The latency deadline's rule (ROS-free): the layer cap follows the machine's speed."""

import math

import pytest

from actdistill_ros.control.latency_budget import LatencyBudget, decide_cap, percentile


def test_percentile_is_nearest_rank():
    values = list(range(1, 21))  # 1..20
    assert percentile(values, 95) == 19
    assert percentile(values, 50) == 10
    assert percentile([3.0], 95) == 3.0


def test_decide_cap_rule():
    slow, fast, ok = [12.0] * 10, [5.0] * 10, [9.0] * 10
    assert decide_cap(slow[:5], 8, 8, 10.0) == 8  # too few samples: keep
    assert decide_cap(slow, 8, 8, 10.0) == 6  # floor(8 * 10 / 12)
    assert decide_cap([10.5] * 10, 8, 8, 10.0) == 7  # at least one layer less
    assert decide_cap(slow, 1, 8, 10.0) == 1  # never below one layer
    assert decide_cap(fast, 4, 8, 10.0) == 5  # clear room: one layer more
    assert decide_cap(fast, 8, 8, 10.0) == 8  # never above the model
    assert decide_cap(ok, 4, 8, 10.0) == 4  # one layer more would not fit (9 * 5 / 4 > 9.5): keep
    assert decide_cap(slow, 8, 8, 0.0) == 8  # off


def _simulate(budget: LatencyBudget, slowdown: float, passes: int, fixed_ms=1.0, layer_ms=1.0) -> list[float]:
    """A machine whose pass costs fixed + per-layer time x cap, all of it ``slowdown`` times slower."""
    latencies = []
    for _ in range(passes):
        latency = slowdown * (fixed_ms + layer_ms * budget.cap)
        latencies.append(latency)
        budget.update(latency)
    return latencies


def test_cap_drops_when_the_machine_slows_and_recovers_after():
    budget = LatencyBudget(budget_ms=10.0, layers_total=8)
    _simulate(budget, 1.0, 100)  # 9 ms at 8 layers: under the budget, full model
    assert budget.cap == 8 and budget.misses == 0
    _simulate(budget, 3.0, 200)  # a loaded machine: 27 ms at 8 layers
    assert budget.cap == 2  # 3 * (1 + 2) = 9 ms <= 10 < 3 * (1 + 3)
    tail = _simulate(budget, 3.0, 100)
    assert percentile(tail, 95) <= 10.0
    misses_while_loaded = budget.misses
    assert 0 < misses_while_loaded < 40  # a few windows to find the cap, then none
    _simulate(budget, 1.0, 300)  # load gone: back up to the full model
    assert budget.cap == 8
    assert not math.isnan(budget.p95_ms)


def test_a_cut_starts_from_the_layers_the_router_ran():
    """A router running 3 of 8 layers: a cap of 8, 7 or 6 binds nothing; the first cut goes below 3."""
    budget = LatencyBudget(budget_ms=10.0, layers_total=8)
    for _ in range(10):
        budget.update(3.0 * (1.0 + 3.0), layers_executed=3)  # 12 ms: a slow machine
    assert budget.cap == 2  # floor(3 * 10 / 12), not floor(8 * 10 / 12) = 6
    for _ in range(40):  # room again: up one layer per window, past what the router ran
        budget.update(1.0 + min(budget.cap, 3), layers_executed=min(budget.cap, 3))
    assert budget.cap > 3


def test_layers_total_checked():
    with pytest.raises(ValueError):
        LatencyBudget(10.0, 0)
