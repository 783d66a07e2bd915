"""The VLA teacher interface that routing, distillation, export and FLOPs counting use.

A VLA is seen as: inputs -> ``embed`` -> token states over [vision | text] spans -> a stack
of decoder layers -> ``final_norm`` -> ``action_head``. Everything downstream talks only
to this interface, so a transformers VLM adapter plugs in by implementing it.

The action head is any :class:`~actdistill_ros.core.model.action_heads.ActionHead` (regression,
discrete tokens, flow matching; ``build_action_head``): ``head`` runs it for inference and
``head_loss`` gives its own task loss, which teacher training and stage 2 use.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..data.dataset import ACTION_DIM
from .action_heads import ActionHead


@dataclass
class TokenBatch:
    """Token states entering decoder layer 0 plus everything a layer call needs."""

    hidden: torch.Tensor  # [B, T, D]
    vision_mask: torch.Tensor  # bool [B, T]: vision tokens
    text_mask: torch.Tensor  # bool [B, T]: language tokens (padding excluded)
    attention_mask: torch.Tensor  # bool [B, T]: valid tokens
    layer_kwargs: dict[str, Any] = field(default_factory=dict)  # per-forward tensors (masks, rotary)

    def select(self, rows: torch.Tensor) -> TokenBatch:
        """The sub-batch of ``rows`` (used to run a layer only on the samples that keep it)."""
        return TokenBatch(
            hidden=self.hidden[rows],
            vision_mask=self.vision_mask[rows],
            text_mask=self.text_mask[rows],
            attention_mask=self.attention_mask[rows],
            layer_kwargs={k: _select_rows(v, rows) for k, v in self.layer_kwargs.items()},
        )


def _select_rows(value: Any, rows: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor):
        return value[rows] if value.shape[0] > 1 else value
    if isinstance(value, tuple):
        return tuple(_select_rows(v, rows) for v in value)
    return value


class ActionNormalizer(nn.Module):
    """Per-dimension action statistics stored with the model (as buffers, so they are exported)."""

    def __init__(self, action_dim: int = ACTION_DIM) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(action_dim))
        self.register_buffer("std", torch.ones(action_dim))

    @torch.no_grad()
    def fit(self, actions: torch.Tensor) -> None:
        flat = actions.reshape(-1, actions.shape[-1]).double()
        self.mean.copy_(flat.mean(0).float())
        # a constant dimension (e.g. an unused rotation) must not divide by zero
        self.std.copy_(flat.std(0).clamp_min(1e-3).float())

    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.mean) / self.std

    def denormalize(self, actions: torch.Tensor) -> torch.Tensor:
        return actions * self.std + self.mean


class VLATeacher(nn.Module, abc.ABC):
    """A frozen-able VLA exposing its decoder stack layer by layer.

    Subclasses set ``layers`` (an ``nn.ModuleList``), ``final_norm``, ``action_head`` and
    ``normalizer``, and implement ``prepare``, ``embed`` and ``run_layer``; ``vision_parameters``
    (for ``memory.freeze_vision``) is optional.
    """

    layers: nn.ModuleList
    final_norm: nn.Module
    action_head: nn.Module
    normalizer: ActionNormalizer
    gradient_checkpointing: bool = False  # set by the memory options; only used while training

    @property
    @abc.abstractmethod
    def hidden_size(self) -> int: ...

    @property
    @abc.abstractmethod
    def chunk_size(self) -> int: ...

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @abc.abstractmethod
    def prepare(self, images: Any, instructions: list[str]) -> dict[str, torch.Tensor]:
        """Raw inputs (uint8 RGB images, instruction strings) -> model input tensors on CPU."""

    @abc.abstractmethod
    def embed(self, inputs: dict[str, torch.Tensor]) -> TokenBatch:
        """Model input tensors -> token states entering layer 0."""

    @abc.abstractmethod
    def run_layer(self, index: int, hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        """Apply decoder layer ``index`` to ``hidden`` [B, T, D]."""

    def vision_parameters(self) -> list[nn.Parameter]:
        """The image encoder's parameters (frozen by ``memory.freeze_vision``); the projector
        into the decoder width may stay trainable. Override in a teacher that supports it."""
        raise NotImplementedError(f"{type(self).__name__} does not name its vision encoder (vision_parameters())")

    def call_layer(self, index: int, hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        """``run_layer``, recomputed in backward (activation checkpointing) when
        ``gradient_checkpointing`` is on and gradients are being recorded."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(self.run_layer, index, hidden, batch, use_reentrant=False)
        return self.run_layer(index, hidden, batch)

    def run_layers(self, batch: TokenBatch, return_hidden: bool = False):
        """All decoder layers -> (final states, per-layer outputs or [])."""
        hidden = batch.hidden
        per_layer = []
        for index in range(self.num_layers):
            hidden = self.call_layer(index, hidden, batch)
            if return_hidden:
                per_layer.append(hidden)
        return hidden, per_layer

    def head(self, hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        """Final norm + action head -> normalised action chunk [B, H, 7] (inference)."""
        return self.action_head(self.final_norm(hidden), batch.attention_mask)

    def head_loss(self, hidden: torch.Tensor, batch: TokenBatch, target: torch.Tensor) -> torch.Tensor:
        """The action head's own task loss from the last layer's states against the normalised
        chunk ``target`` (MSE, token cross-entropy or flow matching, by head)."""
        if isinstance(self.action_head, ActionHead):
            return self.action_head.loss(self.final_norm(hidden), batch.attention_mask, target)
        return self.task_loss(self.head(hidden, batch), target)

    def forward(self, inputs: dict[str, torch.Tensor], return_hidden: bool = False):
        """Full teacher pass. With ``return_hidden`` also the output of every layer."""
        batch = self.embed(inputs)
        hidden, per_layer = self.run_layers(batch, return_hidden)
        actions = self.head(hidden, batch)
        return (actions, per_layer, batch) if return_hidden else actions

    def forward_loss(self, inputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Training pass: the head's task loss against the normalised chunk ``target``."""
        batch = self.embed(inputs)
        hidden, _ = self.run_layers(batch)
        return self.head_loss(hidden, batch, target)

    def task_loss(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss on predicted actions for a plain ``nn.Module`` head (normalised space); heads
        derived from ``ActionHead`` use their own ``loss`` instead (see ``head_loss``)."""
        return nn.functional.mse_loss(predicted, target)
