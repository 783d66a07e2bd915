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
at 16 samples. ``router.credit_layers`` k > 0 bounds it for deep teachers: each sampled row
toggles only k layers drawn at random (k + 1 passes per row, whatever the depth); the layers not
measured this step are left out of the loss (NaN values), and over the steps every layer is tried.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..model.route_exec import RouteExecutor
from ..model.teacher import TokenBatch, VLATeacher


def toggled_routes(route: torch.Tensor, layers: torch.Tensor | None = None) -> torch.Tensor:
    """bool [N, L] routes -> [K + 1, N, L]: variant ``j`` flips layer ``layers[n, j]`` of route ``n``
    (``layers``: long [N, K]; None = every layer, K = L, variant ``l`` flips layer ``l``), the last
    variant is the route itself."""
    n, num_layers = route.shape
    if layers is None:
        layers = torch.arange(num_layers).expand(n, num_layers)
    k = layers.shape[1]
    variants = route.unsqueeze(0).repeat(k + 1, 1, 1)
    variant, row = torch.arange(k)[:, None].expand(k, n), torch.arange(n)[None].expand(k, n)
    column = layers.T  # [K, N]
    variants[variant, row, column] = ~route[row, column]
    return variants


def sample_credit_layers(num_rows: int, num_layers: int, k: int,
                         generator: torch.Generator | None = None) -> torch.Tensor | None:
    """``k`` distinct layers per row, drawn at random (long [N, k]); None when ``k`` is 0 or covers
    every layer (measure them all)."""
    if k <= 0 or k >= num_layers:
        return None
    return torch.rand(num_rows, num_layers, generator=generator).argsort(dim=1)[:, :k]


@torch.no_grad()
def measure_layer_values(backbone: VLATeacher, batch: TokenBatch, route: torch.Tensor,
                         target: torch.Tensor, layers: torch.Tensor | None = None) -> torch.Tensor:
    """Per sample and layer, the action error without the layer minus the error with it, the rest
    of ``route`` (bool [N, L]) unchanged: positive where the layer helps. ``target``: the
    normalised action chunks [N, H, A]. ``layers`` (long [N, K], from ``sample_credit_layers``)
    measures only those layers of each sample, the others come back NaN; None measures every layer.
    The backbone runs in eval mode (no dropout in a value)."""
    route = route.detach().bool().cpu()
    n, num_layers = route.shape
    layers = None if layers is None else layers.detach().long().cpu()
    variants = toggled_routes(route, layers)
    k = variants.shape[0] - 1
    rows = torch.arange(n, device=batch.hidden.device).repeat(k + 1)
    was_training = backbone.training
    backbone.eval()
    try:
        actions = RouteExecutor(backbone).run(batch.select(rows), variants.reshape(-1, num_layers))
    finally:
        backbone.train(was_training)
    errors = ((actions.float() - target.float()[rows]) ** 2).flatten(1).mean(1).view(k + 1, n)
    toggled, base = errors[:-1].T, errors[-1:].T  # [N, K], [N, 1]
    measured = torch.arange(num_layers).expand(n, num_layers) if layers is None else layers
    sign = route.gather(1, measured).to(errors.device, errors.dtype) * 2 - 1  # +1: ran (removed), -1: added
    values = torch.full((n, num_layers), float("nan"), device=errors.device, dtype=errors.dtype)
    values.scatter_(1, measured.to(errors.device), sign * (toggled - base))
    return values


def credit_loss(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """MSE between the router's scores [N, L], centred over the batch, and the measured values,
    standardised over the batch (see the module docstring); entries whose value is NaN (not
    measured this step) are left out."""
    values = values.detach().float()
    measured = torch.isfinite(values)
    values, logits = values[measured], logits.float()[measured]
    target = (values - values.mean()) / values.std(unbiased=False).clamp_min(1e-8)
    return F.mse_loss(logits - logits.mean(), target)
