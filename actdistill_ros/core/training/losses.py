"""ActDistill stage-2 losses, term by term as METHOD.md specifies.

total = task
      + alpha * sum_l w_l [ (1 - cos(s_l^S, s_l^T)) + eta * MSE(C_l^S, C_l^T) ]
      + beta  * sum_l w_l [ MSE(a_l^S, a_gt) + MSE(a_l^S, a_l^T) + MSE(a_l^S, sg(a_{l-1}^S)) ]
      + lambda_bal * balance + lambda_budget * budget
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from ..config import LossConfig


def layer_weights(num_layers: int, gamma: float, device=None) -> torch.Tensor:
    """w_l = (l / (L-1))^gamma for l = 0..L-1, divided by their mean (deeper weighs more)."""
    if num_layers == 1:
        return torch.ones(1, device=device)
    l = torch.arange(num_layers, dtype=torch.float32, device=device)
    w = (l / (num_layers - 1)) ** gamma
    return w / w.mean()


def pairwise_cosine(x: torch.Tensor) -> torch.Tensor:
    """[B, d] -> [B, B] cosine similarities (the relational structure C_l)."""
    x = F.normalize(x, dim=-1, eps=1e-8)
    return x @ x.transpose(0, 1)


def semantic_term(student_sem: torch.Tensor, teacher_sem: torch.Tensor) -> torch.Tensor:
    """Per-layer mean over samples of (1 - cos(s^S, s^T)); [B, L, d] -> [L]."""
    return (1.0 - F.cosine_similarity(student_sem, teacher_sem, dim=-1, eps=1e-8)).mean(0)


def relational_term(student_sem: torch.Tensor, teacher_sem: torch.Tensor) -> torch.Tensor:
    """Per-layer MSE between the batch's B x B cosine matrices; [B, L, d] -> [L]."""
    return torch.stack([
        F.mse_loss(pairwise_cosine(student_sem[:, l]), pairwise_cosine(teacher_sem[:, l]))
        for l in range(student_sem.shape[1])
    ])


def semantic_terms(student_sem: torch.Tensor, teacher_sem: torch.Tensor, eta: float):
    """Per-layer (1 - cos) and relational MSE; inputs [B, L, d] -> two [L] tensors."""
    return semantic_term(student_sem, teacher_sem), eta * relational_term(student_sem, teacher_sem)


def action_terms(student_actions: torch.Tensor, teacher_actions: torch.Tensor, target: torch.Tensor):
    """Per-layer MSE to ground truth, to the teacher's layer, to the previous student layer.

    ``student_actions``/``teacher_actions``: [B, L, H, 7]; ``target``: [B, H, 7]. The previous
    layer's prediction is a stop-gradient target; the layer before the first is 0.
    """
    dims = (0, 2, 3)
    to_gt = ((student_actions - target[:, None]) ** 2).mean(dims)
    to_teacher = ((student_actions - teacher_actions) ** 2).mean(dims)
    previous = torch.cat([torch.zeros_like(student_actions[:, :1]), student_actions[:, :-1].detach()], dim=1)
    to_previous = ((student_actions - previous) ** 2).mean(dims)
    return to_gt, to_teacher, to_previous


def balance_loss(gate_probs: torch.Tensor) -> torch.Tensor:
    """Variance over layers of the batch-mean gate (discourages always/never-used layers)."""
    return gate_probs.mean(0).var(unbiased=False)


def budget_loss(gates: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """(mean gate - rho)^2: pulls the executed-layer fraction to the target keep ratio.

    Given the straight-through gates, the forward value is the fraction of layers that
    really run (what inference will do) and the gradient flows through the sigmoid; on
    soft probabilities the mean could sit at rho while every hard decision is still 1."""
    return (gates.mean() - keep_ratio) ** 2


def distillation_loss(
    cfg: LossConfig,
    task: torch.Tensor,
    student_sem: torch.Tensor,
    teacher_sem: torch.Tensor,
    student_layer_actions: torch.Tensor,
    teacher_layer_actions: torch.Tensor,
    target: torch.Tensor,
    gate_probs: torch.Tensor,
    gates: torch.Tensor,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    keep_target: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """-> (total loss, every term as a float for logging).

    ``gather`` (several processes, each holding a shard of the batch): concatenates a tensor
    over all ranks, differentiably. The batch-level terms -- the relational B x B matrices,
    balance and budget -- are then computed over the whole global batch, while the per-sample
    terms stay local means (DDP's gradient averaging makes those global means). ``keep_target``:
    the budget's current target (default ``cfg.keep_ratio``; stage 2 lowers it gradually, see
    ``LossConfig.keep_target``)."""
    w = layer_weights(student_sem.shape[1], cfg.gamma, device=student_sem.device)
    semantic = semantic_term(student_sem, teacher_sem)
    if gather is not None:
        student_sem, teacher_sem, gate_probs, gates = (gather(t) for t in (student_sem, teacher_sem, gate_probs,
                                                                             gates))
    relational = cfg.eta * relational_term(student_sem, teacher_sem)
    keep = cfg.keep_ratio if keep_target is None else keep_target
    balance, budget = balance_loss(gate_probs), budget_loss(gates, keep)
    to_gt, to_teacher, to_previous = action_terms(student_layer_actions, teacher_layer_actions, target)
    sem_term = (w * semantic).sum()
    rel_term = (w * relational).sum()
    act_term = (w * (to_gt + to_teacher + to_previous)).sum()
    total = (task + cfg.alpha * (sem_term + rel_term) + cfg.beta * act_term
             + cfg.balance * balance + cfg.budget * budget)
    terms = {
        "total": total.item(), "task": task.item(), "semantic": sem_term.item(),
        "relational": rel_term.item(), "action_gt": (w * to_gt).sum().item(),
        "action_teacher": (w * to_teacher).sum().item(), "action_prev": (w * to_previous).sum().item(),
        "balance": balance.item(), "budget": budget.item(), "gate_mean": gate_probs.mean().item(),
        "executed": gates.detach().mean().item(),
    }
    return total, terms
