"""A latency deadline the policy node keeps by itself: the layer cap follows recent latencies.

Skipping layers is the student's run-time knob, so when the machine gets slower (a shared GPU, a
loaded CPU) the node can trade accuracy for time instead of missing its deadline. The rule:

* every decision looks at the forward latencies measured *since the last change* (latencies of
  another cap say nothing about this one), and waits for ``min_samples`` of them;
* p95 above the budget: lower the cap in proportion (``cap * budget / p95``, at least one layer
  less; the fixed costs do not shrink with the cap, so the next window corrects what is left);
* when one layer more would still fit, p95 scaled by ``(cap + 1) / cap`` (an over-estimate:
  the fixed costs do not grow) below ``raise_below`` x budget: one layer more (upward one layer
  per full window: a raise that overshoots costs misses);
* otherwise: keep.

:func:`decide_cap` is the pure rule; :class:`LatencyBudget` keeps the window, the cap and the
count of misses (passes over the budget) that ``status`` reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 20 samples p95 is the second largest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def decide_cap(latencies_ms: Sequence[float], cap: int, layers_total: int, budget_ms: float,
               min_samples: int = 10, raise_below: float = 0.95, min_cap: int = 1) -> int:
    """The layer cap for the next passes, given the latencies measured at ``cap`` (see module)."""
    if budget_ms <= 0 or len(latencies_ms) < min_samples:
        return cap
    p95 = percentile(latencies_ms, 95)
    if p95 > budget_ms and cap > min_cap:
        return max(min_cap, min(cap - 1, math.floor(cap * budget_ms / p95)))
    if cap < layers_total and p95 * (cap + 1) / cap < raise_below * budget_ms:
        return cap + 1
    return cap


@dataclass
class LatencyBudget:
    budget_ms: float
    layers_total: int
    min_samples: int = 10
    raise_below: float = 0.95
    cap: int = 0  # current cap (set to layers_total at start)
    misses: int = 0  # passes that took longer than the budget
    passes: int = 0
    window: list[float] = field(default_factory=list)
    layers: list[int] = field(default_factory=list)  # layers the passes of the window ran

    def __post_init__(self) -> None:
        if self.layers_total < 1:
            raise ValueError(f"layers_total must be >= 1, got {self.layers_total}")
        self.cap = self.cap or self.layers_total

    def update(self, latency_ms: float, layers_executed: int | None = None) -> int | None:
        """Record one forward pass; -> the new cap when it changes, else None. With
        ``layers_executed`` a cut starts from the layers the router actually ran (a cap above
        them binds nothing: scaling it down would take several windows to bite)."""
        self.passes += 1
        if latency_ms > self.budget_ms:
            self.misses += 1
        self.window.append(float(latency_ms))
        if layers_executed is not None:
            self.layers.append(int(layers_executed))
        new = decide_cap(self.window, self.cap, self.layers_total, self.budget_ms, self.min_samples,
                         self.raise_below)
        ran = min(self.cap, max(self.layers)) if self.layers else self.cap
        if new < self.cap and ran < self.cap:
            new = decide_cap(self.window, ran, self.layers_total, self.budget_ms, self.min_samples,
                             self.raise_below)
        if new == self.cap:
            if len(self.window) >= 4 * self.min_samples:  # steady: a sliding window
                del self.window[: len(self.window) - 2 * self.min_samples]
                del self.layers[: max(0, len(self.layers) - 2 * self.min_samples)]
            return None
        self.cap = new
        self.window.clear()
        self.layers.clear()
        return new

    @property
    def p95_ms(self) -> float:
        return percentile(self.window, 95) if self.window else math.nan
