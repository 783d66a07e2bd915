"""The latency deadline's rule (ROS-free): the layer cap follows the machine's speed."""

import math
import random

import pytest

from actdistill_ros.control.latency_budget import (
    LatencyBudget,
    decide_cap,
    layer_cap,
    pass_cost,
    percentile,
    tail_latency,
)


def test_percentile_is_nearest_rank():
    values = list(range(1, 21))  # 1..20
    assert percentile(values, 95) == 19
    assert percentile(values, 50) == 10
    assert percentile([3.0], 95) == 3.0


def test_tail_latency_is_the_p95_a_full_window_can_not_fall_below():
    assert tail_latency(list(range(1, 41)), 40) == percentile(range(1, 41), 95) == 38  # full: the p95
    assert math.isnan(tail_latency([50.0, 50.0], 40))  # 2 slow passes in 40 are what a p95 allows
    assert tail_latency([50.0, 50.0, 50.0], 40) == 50.0  # a 3rd: the full window's p95 is >= 50 already
    assert tail_latency([1.0] * 10, 10) == 1.0  # a window of 10 lets nothing through: the max


def test_pass_cost_counts_the_fixed_part():
    assert pass_cost(8, 8, None) == 1.0 and pass_cost(2, 8, None) == pytest.approx(0.25)  # no share: proportional
    assert pass_cost(1, 6, 0.4 / 6) == pytest.approx(0.6 + 0.4 / 6)  # fixed 60%: one layer is 2/3 of a full pass


def test_decide_cap_rule():
    """Zero fixed cost (no layer_share): the cut is proportional, as before the redesign."""
    slow, fast, ok = [12.0] * 40, [5.0] * 40, [9.0] * 40
    assert decide_cap(slow, [], 8, 8, 10.0) == 6  # floor(8 * 10 / 12)
    assert decide_cap([10.5] * 40, [], 8, 8, 10.0) == 7  # at least one layer less
    assert decide_cap(slow, [], 1, 8, 10.0) == 1  # never below one layer
    assert decide_cap(slow, [], 4, 8, 10.0, min_cap=3) == 3  # nor below min_cap
    assert decide_cap(fast, [], 4, 8, 10.0) == 5  # clear room: one layer more
    assert decide_cap(fast[:39], [], 4, 8, 10.0) == 4  # ... but only after a full window
    assert decide_cap(fast, [], 8, 8, 10.0) == 8  # never above the model
    assert decide_cap(ok, [], 4, 8, 10.0) == 4  # one layer more would not fit (9 * 5 / 4 > 9.5): keep
    assert decide_cap(slow, [], 8, 8, 0.0) == 8  # off


def test_one_or_two_slow_passes_in_a_window_do_not_cut_three_do_at_once():
    quiet = [8.0] * 40
    for i in (5, 30):  # a descheduled pass (5x) twice in 40 passes: p95 (the 3rd largest) is still quiet
        quiet[i] = 40.0
        assert decide_cap(quiet, [6] * 40, 6, 6, 10.0) == 6
    assert decide_cap([40.0] * 3, [6] * 3, 6, 6, 10.0) < 6  # a slowdown: 3 passes, window far from full


def test_a_top2_student_is_cut_from_the_layers_it_ran_directly():
    """Passes that ran 2 layers under a cap of 6: caps 6..3 bind nothing, so the cut is 2 -> 1 at
    once (the old rule went 6 -> 5 -> 4 -> 3 -> 1 through windows that changed nothing)."""
    slow = [12.0] * 40
    assert decide_cap(slow, [2] * 40, 6, 6, 10.0) == 1
    assert decide_cap(slow, [1] * 40, 6, 6, 10.0) == 6  # it runs one layer already: nothing to skip
    quiet = [8.0] * 39 + [40.0]
    assert decide_cap(quiet, [2] * 40, 4, 6, 10.0) == 4  # a cap above what it runs: a quiet window keeps it


def test_fixed_costs_make_the_cut_deeper_and_the_raise_possible():
    share = 0.1  # 6 layers, 40% of a full pass fixed
    # 1.6x over at 6 layers: 0.4 + 0.1 L <= 1 / 1.6 -> L = 2 (proportional: 6 / 1.6 -> 3, and another window)
    assert decide_cap([16.0] * 40, [6] * 40, 6, 6, 10.0, layer_share=share) == 2
    assert decide_cap([16.0] * 40, [6] * 40, 6, 6, 10.0) == 3
    # at cap 1, 8 ms of a 10 ms budget: 2 layers cost 0.6/0.5 of one -> 9.6 ms predicted: over 9.5, keep;
    # with fixed 60% (share 0.4/6) 8 x 0.733/0.667 = 8.8 ms: raise. Proportional: 16 ms, never.
    assert decide_cap([8.0] * 40, [1] * 40, 1, 6, 10.0, layer_share=share) == 1
    assert decide_cap([8.0] * 40, [1] * 40, 1, 6, 10.0, layer_share=0.4 / 6) == 2
    assert decide_cap([8.0] * 40, [1] * 40, 1, 6, 10.0) == 1


def test_layer_cap_is_the_operators_lowered_by_the_deadline_where_it_binds():
    assert layer_cap(None, None, 6) is None  # no max_layers, no deadline
    assert layer_cap(4, None, 6) == 4
    assert layer_cap(None, 6, 6) is None and layer_cap(4, 6, 6) == 4  # a deadline that has not cut
    assert layer_cap(None, 3, 6) == 3 and layer_cap(4, 3, 6) == 3  # a cut binds
    assert layer_cap(2, 3, 6) == 2  # the operator's lower cap stays the bound
    assert layer_cap(6, 6, 6) == 6  # reported as a cap of 6, with or without a deadline


def test_layer_share_checked():
    with pytest.raises(ValueError):
        LatencyBudget(10.0, 6, layer_share=0.2)  # 6 x 0.2 > a full pass
    with pytest.raises(ValueError):
        LatencyBudget(10.0, 6, layer_share=0.0)
    with pytest.raises(ValueError):
        LatencyBudget(10.0, 0)


def _simulate(budget: LatencyBudget, slowdown: float, passes: int, fixed_ms=1.0, layer_ms=1.0, wants=None,
              jitter=0.0, outlier_every=0, rng=None) -> list[float]:
    """A machine whose pass costs fixed + per-layer time x the layers run (the router's ``wants``,
    at most the cap), all of it ``slowdown`` times slower, +-``jitter`` noise, and every
    ``outlier_every``-th pass descheduled (3x)."""
    latencies = []
    for i in range(passes):
        ran = min(budget.cap, wants or budget.cap)
        latency = slowdown * (fixed_ms + layer_ms * ran)
        if rng is not None:
            latency *= 1.0 + rng.uniform(-jitter, jitter)
        if outlier_every and i % outlier_every == outlier_every - 1:
            latency *= 3.0
        latencies.append(latency)
        budget.update(latency, ran)
    return latencies


def test_cap_drops_when_the_machine_slows_and_recovers_after():
    budget = LatencyBudget(budget_ms=10.0, layers_total=8)
    _simulate(budget, 1.0, 100)  # 9 ms at 8 layers: under the budget, full model
    assert budget.cap == 8 and budget.misses == 0
    _simulate(budget, 3.0, 200)  # a loaded machine: 27 ms at 8 layers
    assert budget.cap == 2  # 3 * (1 + 2) = 9 ms <= 10 < 3 * (1 + 3)
    tail = _simulate(budget, 3.0, 100)
    assert percentile(tail, 95) <= 10.0
    assert budget.misses == 3  # the 3 passes that made the p95 certain, then none
    _simulate(budget, 1.0, 300)  # load gone: back up to the full model
    assert budget.cap == 8
    assert not math.isnan(budget.p95_ms)


def test_a_top2_student_with_fixed_costs_degrades_to_one_layer_and_comes_back():
    """The shipped student's shape: 6 layers, each input runs its top 2; fixed costs (stem,
    embeddings, head) 60% of a full pass; budget 1.3x the quiet p95; jitter and a descheduled pass
    every 50 in the quiet phases."""
    full_ms = 10.0
    fixed_ms, layer_ms = 0.6 * full_ms, 0.4 * full_ms / 6
    quiet_ms = fixed_ms + 2 * layer_ms
    rng = random.Random(0)

    def run(budget, slowdown, passes, outliers=0):
        return _simulate(budget, slowdown, passes, fixed_ms, layer_ms, wants=2, jitter=0.03, outlier_every=outliers,
                         rng=rng)

    budget = LatencyBudget(budget_ms=1.3 * quiet_ms, layers_total=6, layer_share=0.4 / 6)
    run(budget, 1.0, 200, outliers=50)
    assert budget.cap == 6 and budget.misses == 4  # one outlier per window: 4 misses, no cut
    before, passes = budget.misses, 0
    while budget.cap == 6 and passes < 40:  # a CPU hog: 1.35x, 2 layers miss, 1 layer fits
        run(budget, 1.35, 1)
        passes += 1
    # 2 -> 1 at once, after the passes that made it certain (3 slow in the last 40: here the quiet
    # phase's last outlier was one of them)
    assert budget.cap == 1 and passes == budget.misses - before == 2
    loaded = run(budget, 1.35, 200)
    assert max(loaded) <= budget.budget_ms and budget.cap == 1
    run(budget, 1.0, 200, outliers=50)  # the hog ends
    assert budget.cap >= 2  # back to the layers the student runs (the old rule: p95 x 2 at cap 1, stuck)
    assert run(budget, 1.0, 1)[0] > fixed_ms + 1.5 * layer_ms  # it runs 2 layers again
    stuck = LatencyBudget(budget_ms=1.3 * quiet_ms, layers_total=6, cap=1)  # no fixed costs known
    run(stuck, 1.0, 400)
    assert stuck.cap == 1


def test_a_cut_starts_from_the_layers_the_router_ran():
    """A router running 3 of 8 layers: a cap of 8, 7 or 6 binds nothing; the first cut goes below 3."""
    budget = LatencyBudget(budget_ms=10.0, layers_total=8)
    for _ in range(3):
        budget.update(3.0 * (1.0 + 3.0), layers_executed=3)  # 12 ms: a slow machine
    assert budget.cap == 2  # 3 layers x 10 / 12, not 8 x 10 / 12 = 6
    for _ in range(200):  # room again: up one layer per window, past what the router ran
        budget.update(1.0 + min(budget.cap, 3), layers_executed=min(budget.cap, 3))
    assert budget.cap > 3
