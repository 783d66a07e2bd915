"""What a router did on a set of samples, and when that result is a collapse worth a warning.

A routed student can meet its FLOPs number in ways that defeat the point of routing: every
layer or none, a fraction far from the target it was trained for, or one route for every
input (then it is a statically pruned network and a fixed route would do the same). These
are reported, never silently accepted: the distillation job prints them and writes them to
``report.json`` (``warnings``) and ``report.md``.
"""

from __future__ import annotations

from collections import Counter

import torch

TOP_ROUTES = 5
OFF_TARGET = 0.1  # |executed fraction - keep_ratio| beyond this is a warning


def route_statistics(executed: torch.Tensor) -> dict:
    """``executed`` bool [N, L] (which layers ran per sample) -> fraction, per-layer frequency,
    the number of distinct routes and the most common ones with their share of samples."""
    executed = executed.bool().cpu()
    counts = Counter(tuple(int(i) for i in row.nonzero().flatten()) for row in executed)
    n = max(1, executed.shape[0])
    return {
        "executed_layer_fraction": executed.float().mean().item(),
        "layer_frequency": executed.float().mean(0).tolist(),
        "distinct_routes": len(counts),
        "top_routes": [{"layers": list(route), "share": count / n} for route, count in counts.most_common(TOP_ROUTES)],
        "layers_per_sample": {"min": int(executed.sum(1).min()), "max": int(executed.sum(1).max()),
                              "mean": executed.sum(1).float().mean().item()},
    }


def routing_warnings(stats: dict, keep_ratio: float, num_layers: int, router_kind: str = "learned") -> list[str]:
    """The collapse warnings for ``route_statistics`` of a student trained for ``keep_ratio``."""
    warnings = []
    fraction = stats["executed_layer_fraction"]
    if fraction <= 0.0:
        warnings.append("the router executes no decoder layer at all: the student's action is a function of the "
                        "embeddings alone")
    elif fraction >= 1.0:
        warnings.append("the router executes every decoder layer for every sample: no compute is saved")
    if abs(fraction - keep_ratio) > OFF_TARGET:
        warnings.append(f"executed layer fraction {fraction:.3f} is off the keep_ratio target {keep_ratio:.3f} by more "
                        f"than {OFF_TARGET} ({fraction * num_layers:.2f} of {num_layers} layers per sample)")
    if router_kind == "learned" and stats["distinct_routes"] == 1 and 0.0 < fraction < 1.0:
        route = stats["top_routes"][0]["layers"]
        warnings.append(f"the router chose one input-independent route (layers {route}) for every sample: the "
                        "student is a statically pruned network, which a fixed route (baselines: true) also gives")
    return warnings
