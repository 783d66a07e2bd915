"""The routed student: a copy of the teacher plus a router that skips decoder layers.

Training uses the gated residual ``h <- h + g * (f(h) - h)`` with a straight-through hard
gate, so the forward pass is exactly what inference computes (a layer with g = 0 leaves h
unchanged) while the router still receives gradients. Inference does not call a skipped
layer at all.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..config import RouterConfig
from .route_exec import Execution, RouteExecutor
from .router import Router, budget_offset, build_router, hard_decisions, one_sample_route, straight_through_gates
from .teacher import TokenBatch, VLATeacher


@dataclass
class StudentTrainOutput:
    actions: torch.Tensor | None  # [B, H, 7] normalised (None when not decoded)
    gate_probs: torch.Tensor  # [B, L] soft router output
    gates: torch.Tensor  # [B, L] straight-through 0/1 gates used in the forward pass
    per_layer_hidden: list[torch.Tensor]
    batch: TokenBatch
    task_loss: torch.Tensor | None = None  # the head's task loss, when a target was given
    batch_offset: float | None = None  # with a keep ratio: the batch's own budget cut (router.budget_offset)
    logits: torch.Tensor | None = None  # [B, L] a learned router's raw scores (None for fixed and random)

    @property
    def hidden(self) -> torch.Tensor:
        """The last layer's states [B, T, D] (input of the action head and its task loss)."""
        return self.per_layer_hidden[-1] if self.per_layer_hidden else self.batch.hidden


@dataclass
class StudentRoutedOutput:
    actions: torch.Tensor  # [B, H, 7] normalised
    executed: torch.Tensor  # bool [B, L] on the host (read there to pick the route): which layers ran
    gate_probs: torch.Tensor  # [B, L]


class RoutedStudent(nn.Module):
    def __init__(self, backbone: VLATeacher, router_cfg: RouterConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.router = build_router(backbone.hidden_size, backbone.num_layers, router_cfg)
        self.threshold = router_cfg.threshold
        self.min_layers = router_cfg.min_layers
        self.max_layers: int | None = None
        self.executor = RouteExecutor(backbone)  # how a decided route runs (eager by default)
        self._router_program = None  # the compiled router (execution 'compile')
        self._route_masks: dict[tuple[int, ...], torch.Tensor] = {}  # route -> its bool [1, L] (one sample)

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

    def set_execution(self, execution: Execution | str = Execution.EAGER, cache_size: int = 8,
                      compile_backend: str = "inductor") -> None:
        """How routes run at inference: ``eager``, ``compile`` or ``cuda_graphs`` (``route_exec``).
        ``compile`` compiles the router too, for batches and GPUs (``inference_probs``: one CPU
        sample keeps its memoised eager path, which costs less than a compiled call)."""
        self.executor = RouteExecutor(self.backbone, execution, cache_size, compile_backend)
        self._router_program = None
        if self.executor.execution == Execution.COMPILE:
            self._router_program = torch.compile(self._router_probs, backend=compile_backend, dynamic=None)

    def inference_probs(self, batch: TokenBatch) -> torch.Tensor:
        """The gates inference decides on [B, L], unchecked (``forward_routed`` checks them with
        its decisions, in the one read it makes anyway). One sample on a CPU takes the router's
        eager fast path (``Router.forward``: the instruction's half memoised), with execution
        'compile' too: there it costs less than a compiled call's guards and wrapper (README
        Results); otherwise the compiled router with 'compile'. ``gate_probs`` always computes
        the whole function (FLOP counts, diagnostics)."""
        one_cpu_sample = batch.hidden.shape[0] == 1 and batch.hidden.device.type == "cpu"
        if self._router_program is not None and not one_cpu_sample:
            return self._router_program(batch)
        return self._router_probs(batch)

    def _router_probs(self, batch: TokenBatch) -> torch.Tensor:
        return self.router(batch.hidden, batch.vision_mask, batch.text_mask)

    def gate_probs(self, batch: TokenBatch) -> torch.Tensor:
        return self._gates(batch)[0]

    def _gates(self, batch: TokenBatch, check: bool = True,
               detach_input: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (gate probabilities [B, L], raw scores of a learned router or None). ``check=False``
        leaves the finiteness check (a host sync on a GPU) to the caller; ``detach_input``: the
        router's loss does not reach the embeddings."""
        if isinstance(self.router, Router):
            hidden = batch.hidden.detach() if detach_input else batch.hidden
            logits = self.router.logits(hidden, batch.vision_mask, batch.text_mask)
            probs = torch.sigmoid(logits - self.router.logit_offset)
        else:
            logits, probs = None, self.router(batch.hidden, batch.vision_mask, batch.text_mask)
        if check and not torch.isfinite(probs).all():
            raise FloatingPointError(_NON_FINITE)
        return probs, logits

    def forward_train(self, inputs: dict[str, torch.Tensor], decode_actions: bool = True,
                      target: torch.Tensor | None = None, keep_ratio: float | None = None,
                      gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      gate_gradient: bool = True) -> StudentTrainOutput:
        """Every layer runs, mixed in by its straight-through gate. With a normalised chunk
        ``target`` also the action head's own task loss (``out.task_loss``). ``decode_actions=False``
        skips the head's inference pass (training needs only the task loss; for token and flow
        heads decoding is a loop of its own). ``keep_ratio`` (learned router): the batch is cut at
        its own budget quantile instead of the inference threshold (``router.py``); without it the
        gates are exactly what inference decides. ``gather`` (several processes): the cut is taken
        over the scores of every rank's shard, i.e. the global batch. ``gate_gradient=False``: hard
        gates that pass no gradient to the router or, through it, to the embeddings (a router that
        learns from measured layer credit instead, ``training/layer_credit.py``)."""
        batch = self.backbone.embed(inputs)
        probs, logits = self._gates(batch, detach_input=not gate_gradient)
        batch_offset = None
        if keep_ratio is not None and logits is not None:
            scores = logits.detach() if gather is None else gather(logits.detach())
            batch_offset = budget_offset(scores, keep_ratio, self.min_layers, self.threshold)
            probs = torch.sigmoid(logits - batch_offset)
        if not gate_gradient:  # the loss terms on the gates (balance, budget) then reach no weight either
            probs = probs.detach()
        gates = straight_through_gates(probs, self.threshold, self.min_layers)
        hidden = batch.hidden
        per_layer = []
        for index in range(self.num_layers):
            out = self.backbone.call_layer(index, hidden, batch)
            hidden = hidden + gates[:, index, None, None] * (out - hidden)
            per_layer.append(hidden)
        actions = self.backbone.head(hidden, batch) if decode_actions else None
        task = None if target is None else self.backbone.head_loss(hidden, batch, target)
        return StudentTrainOutput(actions, probs, gates, per_layer, batch, task, batch_offset, logits)

    @torch.no_grad()
    def forward_routed(self, inputs: dict[str, torch.Tensor]) -> StudentRoutedOutput:
        """Inference: per sample, layers whose gate fails are not executed at all. The decisions
        and a finiteness flag reach the host in one transfer (the only sync before the layers:
        it picks the program); each distinct route then runs as one program (``self.executor``)."""
        batch = self.backbone.embed(inputs)
        probs = self.inference_probs(batch)
        if probs.shape[0] == 1 and probs.device.type == "cpu":
            return self._one_sample_routed(batch, probs)
        keep = hard_decisions(probs, self.threshold, self.max_layers, self.min_layers)
        if keep.device.type == "cpu":
            keep_host, finite = keep, bool(torch.isfinite(probs).all())
        else:
            flags = torch.cat([keep, torch.isfinite(probs).all(1, keepdim=True)], 1).cpu()
            keep_host, finite = flags[:, :-1], bool(flags[:, -1].all())
        if not finite:
            raise FloatingPointError(_NON_FINITE)
        actions = self.executor.run(batch, keep_host)
        return StudentRoutedOutput(actions, keep_host, probs)  # the host copy: no second transfer for callers

    def _one_sample_routed(self, batch: TokenBatch, probs: torch.Tensor) -> StudentRoutedOutput:
        """One sample on a CPU (a robot's control loop): the gates read once into Python, checked
        and decided there, the route run directly. Each tensor op costs a CPU pass more than its
        arithmetic (dispatch, and caches gone cold between camera frames), so this path avoids
        the finiteness and mask ops of the batched rule. ``executed`` is one shared tensor per
        route: read it, do not modify it."""
        scores = probs[0].tolist()
        if not all(map(math.isfinite, scores)):
            raise FloatingPointError(_NON_FINITE)
        route = one_sample_route(scores, self.threshold, self.max_layers, self.min_layers)
        executed = self._route_masks.get(route)
        if executed is None:
            if len(self._route_masks) >= 256:  # bounded: a router uses a handful of routes
                self._route_masks.clear()
            executed = torch.zeros(1, self.num_layers, dtype=torch.bool)
            executed[0, list(route)] = True
            self._route_masks[route] = executed
        return StudentRoutedOutput(self.executor.run_route(batch, route), executed, probs)


_NON_FINITE = "router produced non-finite gates (non-finite inputs or weights)"
