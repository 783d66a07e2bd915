"""A latency deadline the policy node keeps by itself: the layer cap follows recent latencies.

Skipping layers is the student's run-time knob, so when the machine gets slower (a shared GPU, a
loaded CPU) the node can trade accuracy for time instead of missing its deadline. The rule looks at
the passes since the last change of the cap (latencies of another cap say nothing about this one),
at most the last ``window`` of them (40: 4 s at 10 Hz), and at the layers those passes *ran*:

* **Cut** when the window's p95 is over the budget, and as soon as that is certain: nearest-rank
  p95 of 40 passes is the 3rd largest, so 2 slow passes in 40 (5%, what a p95 allows: a
  descheduled pass) never cut, and 3 cut at once, even before the window is full (the full
  window's p95 can only be higher). A sustained slowdown is cut within 3 passes.
* **A cut starts from the most layers a pass of the window ran**, not from the cap: a top-2
  student under a cap of 6 is cut to 1 directly (caps 6..3 bind nothing, so cutting through them
  only spends windows). The new cap is the largest count below that whose predicted latency fits
  the budget (at least one layer less, at least ``min_cap``); a cap above what the student runs
  is never cut by a quiet window.
* **Raise** one layer per full window when the p95 predicted at ``cap + 1`` layers stays under
  ``raise_below`` x budget (the margin keeps a cut and a raise from alternating), predicted as if
  the new cap were used in full: a cap above what the router runs climbs only as far as that fits.
* **The latency model counts fixed costs**: a pass costs ``1 - (layers_total - L) * layer_share``
  of a full pass, where ``layer_share`` is one decoder layer's fraction of a full pass (the node
  takes it from the checkpoint's FLOP split: stem/embeddings, router and head do not shrink with
  the layer count). Predicted latency at L layers = p95 x cost(L) / cost(layers ran). A load
  stretches a pass roughly in proportion to its length, so the ratio holds under load. Without a share
  the model is proportional (no fixed cost): cuts too small (the next window finishes them), raises
  over-estimated (at cap 1, p95 x 2: the cap would never come back). Latencies measured at two
  layer counts were the alternative, but the load changes between them (it is why the cap moved).

:func:`decide_cap` is the pure rule; :class:`LatencyBudget` keeps the window, the cap and the
count of misses (passes over the budget) that ``status`` reports; :func:`layer_cap` combines its cap
with the operator's ``max_layers``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 20 samples p95 is the second largest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def tail_latency(latencies_ms: Sequence[float], window: int) -> float:
    """The p95 of a full ``window``; of fewer passes, the value it can no longer fall below (the
    (k+1)-th largest, k = the passes a p95 of ``window`` lets through); NaN while unknown."""
    allowed = window - math.ceil(0.95 * window)
    if len(latencies_ms) <= allowed:
        return math.nan
    return sorted(latencies_ms)[-(allowed + 1)]


def pass_cost(layers: int, layers_total: int, layer_share: float | None) -> float:
    """A pass at ``layers`` layers as a fraction of a full pass (fixed part + share per layer)."""
    share = 1.0 / layers_total if layer_share is None else layer_share
    return 1.0 - (layers_total - layers) * share


def decide_cap(latencies_ms: Sequence[float], layers_run: Sequence[int], cap: int, layers_total: int,
               budget_ms: float, window: int = 40, raise_below: float = 0.95, min_cap: int = 1,
               layer_share: float | None = None) -> int:
    """The layer cap for the next passes, given the latencies (and layers run, one per pass; empty:
    ``cap`` each) of the passes since the last change (see module)."""
    latencies, layers_run = list(latencies_ms)[-window:], list(layers_run)[-window:]
    if budget_ms <= 0 or not latencies:
        return cap
    tail = tail_latency(latencies, window)
    ran = max(layers_run) if layers_run else cap

    def predicted(layers: int) -> float:
        return tail * pass_cost(layers, layers_total, layer_share) / pass_cost(ran, layers_total, layer_share)

    if tail > budget_ms:
        if ran <= min_cap:
            return cap  # nothing left to skip
        return next((n for n in range(ran - 1, min_cap, -1) if predicted(n) <= budget_ms), min_cap)
    if len(latencies) >= window and cap < layers_total and predicted(cap + 1) < raise_below * budget_ms:
        return cap + 1
    return cap


def layer_cap(operator_cap: int | None, deadline_cap: int | None, layers_total: int) -> int | None:
    """The cap the passes run under (None: none): the operator's ``max_layers`` (None: no cap), lowered
    to the deadline's cap where that one binds (None, or ``layers_total``: it does not). The operator's
    cap stays the upper bound: the deadline only ever takes layers away."""
    if deadline_cap is None or deadline_cap >= layers_total:
        return operator_cap
    return min(operator_cap or layers_total, deadline_cap)


def check_layer_share(layer_share: float | None, layers_total: int) -> None:
    if layer_share is not None and not 0.0 < layer_share <= 1.0 / layers_total:
        raise ValueError(f"layer_share must be in (0, 1/{layers_total}] (one of {layers_total} layers' "
                         f"fraction of a full pass), got {layer_share}")


@dataclass
class LatencyBudget:
    budget_ms: float
    layers_total: int
    window: int = 40  # passes a decision looks at (4 s at 10 Hz)
    raise_below: float = 0.95
    layer_share: float | None = None  # one layer's fraction of a full pass (None: no fixed cost)
    min_cap: int = 1
    cap: int = 0  # current cap (set to layers_total at start)
    misses: int = 0  # passes that took longer than the budget
    passes: int = 0
    latencies: deque = field(default_factory=deque)  # the passes since the last change, at most `window`
    layers: deque = field(default_factory=deque)  # the layers each of them ran

    def __post_init__(self) -> None:
        if self.layers_total < 1:
            raise ValueError(f"layers_total must be >= 1, got {self.layers_total}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        check_layer_share(self.layer_share, self.layers_total)
        self.min_cap = max(1, self.min_cap)
        self.cap = self.cap or self.layers_total
        self.latencies = deque(self.latencies, maxlen=self.window)
        self.layers = deque(self.layers, maxlen=self.window)

    def update(self, latency_ms: float, layers_executed: int | None = None) -> int | None:
        """Record one forward pass (and the layers it ran: without them, the cap is assumed);
        -> the new cap when it changes, else None."""
        self.passes += 1
        if latency_ms > self.budget_ms:
            self.misses += 1
        self.latencies.append(float(latency_ms))
        self.layers.append(self.cap if layers_executed is None else int(layers_executed))
        new = decide_cap(self.latencies, self.layers, self.cap, self.layers_total, self.budget_ms,
                         self.window, self.raise_below, self.min_cap, self.layer_share)
        if new == self.cap:
            return None
        self.cap = new
        self.latencies.clear()
        self.layers.clear()
        return new

    @property
    def p95_ms(self) -> float:
        return percentile(self.latencies, 95) if self.latencies else math.nan
