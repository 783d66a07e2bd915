"""Action heads of a transformers VLM teacher.

``regression`` / ``tokens`` / ``flow`` are core's heads (:mod:`actdistill_ros.core.model.action_heads`)
on the final-normed hidden states: new, so they are fitted on the demonstrations (backbone
frozen) before distillation. ``action_tokens`` is OpenVLA's own head: the language model emits
the action as tokens, decoded greedily through the decoder stack (skipping, at every step, the
layers the router skipped for that sample) - nothing new to fit. More heads plug in with
:func:`register_action_head`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..core.model.action_heads import build_action_head as build_core_head
from .errors import HFTeacherError
from .openvla import ACTION_DIM, ActionTokenizer, action_vocab_size
from .options import CORE_HEADS, HEAD_TYPES, HFTeacherOptions


class LMActionTokenHead(nn.Module):
    """OpenVLA-style: ``chunk_size * 7`` action tokens from the model's own LM head.

    Inference: greedy decoding continuing the prompt's prefill (KV cache). Task loss: teacher-forced
    cross-entropy of the ground-truth action tokens, fed after the prompt through the layers that
    ran for the prompt (the cached prompt keys/values carry the gradient back into the stack).
    """

    decodes = True
    needs_fitting = False

    def __init__(
        self, tokenizer: ActionTokenizer, chunk_size: int, action_dim: int = ACTION_DIM, constrain: bool = False
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.chunk_size, self.action_dim, self.constrain = chunk_size, action_dim, constrain

    @property
    def num_tokens(self) -> int:
        return self.chunk_size * self.action_dim

    def allowed_ids(self) -> tuple[int, int] | None:
        return (self.tokenizer.first_id, self.tokenizer.vocab_size) if self.constrain else None

    def forward(self, teacher, hidden: torch.Tensor, batch) -> torch.Tensor:
        tokens = teacher.decode_after_prefill(batch, hidden, self.num_tokens, self.allowed_ids())
        return self.tokenizer.decode(tokens).view(-1, self.chunk_size, self.action_dim).to(hidden.dtype)

    def loss(self, teacher, hidden: torch.Tensor, batch, target: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenizer.encode(target.reshape(target.shape[0], -1))
        logits = teacher.teacher_forced_logits(batch, hidden, tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))


def _core(kind: str) -> Callable:
    def factory(model: Any, processor: Any, hidden_size: int, options: HFTeacherOptions) -> nn.Module:
        head = build_core_head(options.core_head_config(), hidden_size, options.chunk_size, ACTION_DIM)
        head.needs_fitting = True
        return head

    return factory


def _action_tokens(model: Any, processor: Any, hidden_size: int, options: HFTeacherOptions) -> nn.Module:
    vocab = action_vocab_size(processor.tokenizer, model.config)
    rows = model.get_output_embeddings().weight.shape[0]
    if vocab > rows:
        raise HFTeacherError(
            f"processor does not match the model: action tokens count back from id {vocab}, but the "
            f"LM head has only {rows} outputs"
        )
    return LMActionTokenHead(ActionTokenizer(vocab), options.chunk_size, constrain=options.constrain_action_tokens)


HEAD_FACTORIES: dict[str, Callable[[Any, Any, int, HFTeacherOptions], nn.Module]] = {
    **{kind: _core(kind) for kind in CORE_HEADS},
    "action_tokens": _action_tokens,
}


def register_action_head(name: str, factory: Callable[[Any, Any, int, HFTeacherOptions], nn.Module]) -> None:
    """Make ``hf_teacher.head: <name>`` build ``factory(model, processor, hidden_size, options)``: a core-style
    head (``head(final_normed, valid)``, ``loss(...)``; set ``needs_fitting``) or an ``LMActionTokenHead``-like one."""
    HEAD_FACTORIES[name] = factory
    if name not in HEAD_TYPES:
        HEAD_TYPES.append(name)


def build_action_head(model: Any, processor: Any, hidden_size: int, options: HFTeacherOptions) -> nn.Module:
    if options.head not in HEAD_FACTORIES:
        raise HFTeacherError(f"unknown action head {options.head!r}; known: {', '.join(sorted(HEAD_FACTORIES))}")
    return HEAD_FACTORIES[options.head](model, processor, hidden_size, options)
