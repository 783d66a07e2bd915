"""Measured layer credit: the router learns which layers matter by trying them (``router.credit: measured``).

Why: ActDistill trains the router through the straight-through gate gradient, a first-order
guess of what dropping a layer does. At default size that guess ranks the layers nearly at random
against the measured cost of removing each (rank correlation +0.10) and says removing layer 0,
the costliest layer to remove, would *lower* the loss (``benchmarks/gate_gradient_check.py``).
A router taught by it starts out pushed off the layer that matters most.

Instead, on ``router.credit_samples`` samples of each batch, stage 2 runs every single-layer
change of the sample's current route without gradients (the layer removed where it runs, added
where it does not) and reads the head's action error of each: a layer's *value* for that sample
is how much lower the error is with it than without it, the rest of the route unchanged. The
router's raw scores are regressed on those values (scores centred, values standardised, both over
the whole batch: the errors shrink as training goes on while their order is what routing uses;
over the batch rather than per sample, so an input whose layers are all worth more can still be
given more depth by the budget cut). The router learns only from this loss (its gates pass no
gradient, its input is detached); the backbone only from the distillation objective; the budget
controller's batch cut still meets the keep ratio. Cost: L + 1 passes without gradients over the
sampled rows, each running only the layers its route keeps: small beside a training step for the
built-in 6-8 layer models (whose presets use it), several training steps' work for a 32-layer VLA
at 16 samples, which is why it is not the default (lower ``credit_samples`` there).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..model.route_exec import RouteExecutor
from ..model.teacher import TokenBatch, VLATeacher


def toggled_routes(route: torch.Tensor) -> torch.Tensor:
    """bool [N, L] routes -> [L + 1, N, L]: variant ``l`` flips layer ``l`` of every route, the last
    variant is the route itself."""
    num_layers = route.shape[1]
    variants = route.unsqueeze(0).repeat(num_layers + 1, 1, 1)
    layers = torch.arange(num_layers)
    variants[layers, :, layers] = ~route.T
    return variants


@torch.no_grad()
def measure_layer_values(backbone: VLATeacher, batch: TokenBatch, route: torch.Tensor,
                         target: torch.Tensor) -> torch.Tensor:
    """Per sample and layer, the action error without the layer minus the error with it, the rest
    of ``route`` (bool [N, L]) unchanged: positive where the layer helps. ``target``: the
    normalised action chunks [N, H, A]. The backbone runs in eval mode (no dropout in a value)."""
    route = route.detach().bool().cpu()
    n, num_layers = route.shape
    keep = toggled_routes(route).reshape(-1, num_layers)
    rows = torch.arange(n, device=batch.hidden.device).repeat(num_layers + 1)
    was_training = backbone.training
    backbone.eval()
    try:
        actions = RouteExecutor(backbone).run(batch.select(rows), keep)
    finally:
        backbone.train(was_training)
    errors = ((actions.float() - target.float()[rows]) ** 2).flatten(1).mean(1).view(num_layers + 1, n)
    toggled, base = errors[:-1].T, errors[-1:].T  # [N, L], [N, 1]
    sign = route.to(errors.device, errors.dtype) * 2 - 1  # +1: the layer ran (removed), -1: added
    return sign * (toggled - base)


def credit_loss(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """MSE between the router's scores [N, L], centred over the batch, and the measured values,
    standardised over the batch (see the module docstring)."""
    values = values.detach().float()
    target = (values - values.mean()) / values.std(unbiased=False).clamp_min(1e-8)
    logits = logits.float()
    return F.mse_loss(logits - logits.mean(), target)
