"""The routed student: a copy of the teacher plus a router that skips decoder layers.

Training uses the gated residual ``h <- h + g * (f(h) - h)`` with a straight-through hard
gate, so the forward pass is exactly what inference computes (a layer with g = 0 leaves h
unchanged) while the router still receives gradients. Inference does not call a skipped
layer at all.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .config import RouterConfig
from .router import Router, hard_decisions, straight_through_gates
from .teacher import TokenBatch, VLATeacher


@dataclass
class StudentTrainOutput:
    actions: torch.Tensor  # [B, H, 7] normalised
    gate_probs: torch.Tensor  # [B, L] soft router output
    gates: torch.Tensor  # [B, L] straight-through 0/1 gates used in the forward pass
    per_layer_hidden: list[torch.Tensor]
    batch: TokenBatch


@dataclass
class StudentRoutedOutput:
    actions: torch.Tensor  # [B, H, 7] normalised
    executed: torch.Tensor  # bool [B, L]: which layers ran for each sample
    gate_probs: torch.Tensor  # [B, L]


class RoutedStudent(nn.Module):
    def __init__(self, backbone: VLATeacher, router_cfg: RouterConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.router = Router(backbone.hidden_size, backbone.num_layers, router_cfg)
        self.threshold = router_cfg.threshold
        self.max_layers: int | None = None

    @classmethod
    def from_teacher(cls, teacher: VLATeacher, router_cfg: RouterConfig) -> RoutedStudent:
        """Self-derived student: same weights as the teacher, plus a fresh router."""
        return cls(copy.deepcopy(teacher), router_cfg)

    @property
    def num_layers(self) -> int:
        return self.backbone.num_layers

    def set_budget(self, max_layers: int | None = None, threshold: float | None = None) -> None:
        """Run-time compute budget: cap on executed layers (top-K gates) and gate threshold."""
        if max_layers is not None and not 1 <= int(max_layers) <= self.num_layers:
            raise ValueError(f"max_layers must be in [1, {self.num_layers}] or None, got {max_layers}")
        if threshold is not None and not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.max_layers = None if max_layers is None else int(max_layers)
        if threshold is not None:
            self.threshold = float(threshold)

    def gate_probs(self, batch: TokenBatch) -> torch.Tensor:
        probs = self.router(batch.hidden, batch.vision_mask, batch.text_mask)
        if not torch.isfinite(probs).all():
            raise FloatingPointError("router produced non-finite gates (non-finite inputs or weights)")
        return probs

    def forward_train(self, inputs: dict[str, torch.Tensor]) -> StudentTrainOutput:
        batch = self.backbone.embed(inputs)
        probs = self.gate_probs(batch)
        gates = straight_through_gates(probs, self.threshold)
        hidden = batch.hidden
        per_layer = []
        for index in range(self.num_layers):
            out = self.backbone.run_layer(index, hidden, batch)
            hidden = hidden + gates[:, index, None, None] * (out - hidden)
            per_layer.append(hidden)
        actions = self.backbone.head(hidden, batch)
        return StudentTrainOutput(actions, probs, gates, per_layer, batch)

    @torch.no_grad()
    def forward_routed(self, inputs: dict[str, torch.Tensor]) -> StudentRoutedOutput:
        """Inference: per sample, layers whose gate fails are not executed at all."""
        batch = self.backbone.embed(inputs)
        probs = self.gate_probs(batch)
        keep = hard_decisions(probs, self.threshold, self.max_layers)
        keep_cpu = keep.cpu()  # one device sync, not one per layer
        hidden = batch.hidden
        size = hidden.shape[0]
        for index in range(self.num_layers):
            rows = keep_cpu[:, index].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            if rows.numel() == size:
                hidden = self.backbone.run_layer(index, hidden, batch)
            else:
                rows_dev = rows.to(hidden.device)
                hidden = hidden.clone()
                hidden[rows_dev] = self.backbone.run_layer(index, hidden[rows_dev], batch.select(rows_dev))
        actions = self.backbone.head(hidden, batch)
        return StudentRoutedOutput(actions, keep, probs)
