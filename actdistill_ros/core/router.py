"""Router: one gate per decoder layer, computed once per sample before layer 0."""

from __future__ import annotations

import torch
from torch import nn

from .config import RouterConfig


def _masked_mean_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    count = m.sum(1).clamp_min(1.0)
    mean = (x * m).sum(1) / count
    maxed = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    maxed = torch.where(torch.isfinite(maxed), maxed, torch.zeros_like(maxed))  # empty span -> 0
    return torch.cat([mean, maxed], dim=-1)


class Router(nn.Module):
    """Vision and language spans each projected + normalised, mean+max pooled, concatenated;
    a linear head gives one logit per layer; gate = sigmoid(logit)."""

    def __init__(self, hidden_size: int, num_layers: int, cfg: RouterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        r = cfg.router_dim
        self.vision_proj = nn.Sequential(nn.Linear(hidden_size, r), nn.LayerNorm(r))
        self.text_proj = nn.Sequential(nn.Linear(hidden_size, r), nn.LayerNorm(r))
        self.gate_head = nn.Linear(4 * r, num_layers)
        nn.init.normal_(self.gate_head.weight, std=0.01)
        nn.init.constant_(self.gate_head.bias, cfg.init_bias)

    def forward(self, embeddings: torch.Tensor, vision_mask: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """-> gate probabilities [B, L] in (0, 1)."""
        pooled = torch.cat(
            [_masked_mean_max(self.vision_proj(embeddings), vision_mask),
             _masked_mean_max(self.text_proj(embeddings), text_mask)],
            dim=-1,
        )
        return torch.sigmoid(self.gate_head(pooled))


def hard_decisions(probs: torch.Tensor, threshold: float, max_layers: int | None = None) -> torch.Tensor:
    """Inference decisions [B, L] bool: gate >= threshold, optionally only the top-``max_layers``."""
    keep = probs >= threshold
    if max_layers is not None and max_layers < probs.shape[1]:
        top = probs.topk(max_layers, dim=1).indices
        capped = torch.zeros_like(keep).scatter(1, top, True)
        keep = keep & capped
    return keep


def straight_through_gates(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """Forward: the 0/1 decision inference will make; backward: the sigmoid's gradient."""
    hard = (probs >= threshold).to(probs.dtype)
    return hard + probs - probs.detach()
