"""The language model's decoder stack, driven layer by layer from outside the model.

Instead of re-implementing each family's forward (embedding scale, image merging, masks,
rotary or multimodal-rotary positions, prefix-LM attention...), the model's own forward is run
with its decoder layers temporarily replaced by recorders: each records the exact arguments
the model passes to it and returns its input unchanged, and the pass stops at the final norm.
The token states entering layer 0 and the arguments of every layer are then replayed one layer
at a time, so any layer can be skipped.

KV cache with skipped layers: a layer skipped for a sample is skipped at every decoding step of
that sample, so each layer's cache holds exactly the rows that run it, in the same order. Mask
sizes must then come from the number of tokens processed, not from layer 0's cache (layer 0
may never run): :class:`RoutedKVCache`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from ..core.model.teacher import TokenBatch
from .errors import HFTeacherError


@dataclass
class DecoderStack:
    language_model: nn.Module  # holds embed_tokens, layers, norm
    layers: nn.ModuleList
    norm: nn.Module


def find_decoder_stack(model: nn.Module) -> DecoderStack:
    """The language model: the module with ``embed_tokens``, a ``layers`` ModuleList and ``norm``
    (the vision tower has layers too, but no token embedding). The deepest such module wins."""
    found = []
    for name, module in model.named_modules():
        layers = getattr(module, "layers", None)
        if (
            isinstance(layers, nn.ModuleList)
            and len(layers) > 0
            and isinstance(getattr(module, "embed_tokens", None), nn.Module)
            and isinstance(getattr(module, "norm", None), nn.Module)
        ):
            found.append((name.count("."), name, module))
    if not found:
        raise HFTeacherError(
            f"{type(model).__name__}: no language model found (a module with embed_tokens, a `layers` ModuleList "
            "and norm); this architecture needs its own adapter code"
        )
    _, _, lm = max(found, key=lambda item: item[0])
    return DecoderStack(lm, lm.layers, lm.norm)


class _StopForward(Exception):
    """Raised at the final norm: everything the layers need has been recorded."""


class _LayerRecorder(nn.Module):
    """Stands in for a decoder layer: records its call, returns the hidden states unchanged."""

    def __init__(self, layer: nn.Module, calls: list) -> None:
        super().__init__()
        self.wrapped = layer
        self.calls = calls

    def __getattr__(self, name: str) -> Any:  # e.g. attention_type, read by some model loops
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("wrapped"), name)

    def forward(self, hidden_states, *args, **kwargs):
        self.calls.append((args, kwargs))
        return hidden_states


@dataclass
class LayerInputs:
    hidden: torch.Tensor  # [B, T, D] entering layer 0
    calls: list[tuple[tuple, dict]]  # per layer: (positional args after hidden, keyword args)
    lm_kwargs: dict  # what the model passed to its language model (position_ids...)


def record_layer_inputs(model: nn.Module, stack: DecoderStack, model_inputs: dict) -> LayerInputs:
    """Run ``model(**model_inputs)`` up to the final norm, recording every decoder layer's arguments."""
    calls: list = []
    record: dict = {}
    original = stack.language_model.layers

    def on_lm(module, args, kwargs):
        record["lm"] = dict(kwargs)

    def on_norm(module, args):
        record["hidden_out"] = args[0]
        raise _StopForward

    def on_first(module, args, kwargs):
        record["hidden"] = args[0] if args else kwargs["hidden_states"]

    recorders = nn.ModuleList(_LayerRecorder(layer, calls) for layer in original)
    handles = [
        stack.language_model.register_forward_pre_hook(on_lm, with_kwargs=True),
        stack.norm.register_forward_pre_hook(on_norm),
        recorders[0].register_forward_pre_hook(on_first, with_kwargs=True),
    ]
    stack.language_model.layers = recorders
    try:
        model(**model_inputs)
    except _StopForward:
        pass
    finally:
        stack.language_model.layers = original
        for handle in handles:
            handle.remove()
    if "hidden" not in record or len(calls) != len(original):
        raise HFTeacherError(
            f"{type(model).__name__}: the forward pass called {len(calls)} of {len(original)} decoder "
            "layers; this architecture needs its own adapter code"
        )
    return LayerInputs(record["hidden"], calls, record.get("lm", {}))


class RoutedKVCache(DynamicCache):
    """A dynamic KV cache where some layers never run for some (or all) samples.

    Each layer's cache holds the rows that execute it; sizes for masks and positions come from
    ``tokens_seen`` (advanced by the decoding loop) instead of layer 0's cache.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tokens_seen = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.tokens_seen

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.tokens_seen + query_length, 0

    def get_query_offset(self, layer_idx: int = 0) -> int:
        return self.tokens_seen

    @property
    def is_initialized(self) -> bool:
        return self.tokens_seen > 0


def _select_tensor(value: torch.Tensor, rows: torch.Tensor, batch: int, key: str) -> torch.Tensor:
    if key == "position_ids" and value.ndim == 3:  # multimodal rotary positions [3 or 4, B, T]
        return value[:, rows] if value.shape[1] == batch else value
    if value.ndim >= 1 and value.shape[0] == batch and batch > 1:
        return value[rows]
    return value


def _select(value: Any, rows: torch.Tensor, batch: int, key: str, memo: dict) -> Any:
    if isinstance(value, torch.Tensor):
        if id(value) not in memo:
            memo[id(value)] = _select_tensor(value, rows, batch, key)
        return memo[id(value)]
    if isinstance(value, tuple):
        return tuple(_select(v, rows, batch, key, memo) for v in value)
    if isinstance(value, list):
        return [_select(v, rows, batch, key, memo) for v in value]
    if isinstance(value, dict):
        return {k: _select(v, rows, batch, k, memo) for k, v in value.items()}
    return value  # the cache, flags, None


@dataclass
class HFTokenBatch(TokenBatch):
    """A TokenBatch that carries every layer's recorded arguments, the KV cache, and a trace of
    which layers ran for which sample (what a decoding head continues with)."""

    calls: list = field(default_factory=list)  # per layer: (args, kwargs)
    lengths: torch.Tensor | None = None  # [B] valid tokens per sample (right padding)
    last_position: torch.Tensor | None = None  # [B] position id of the last valid token
    cache: RoutedKVCache | None = None
    prompt: dict | None = None  # the model inputs of this batch (for decoding without a cache)
    executed: torch.Tensor | None = None  # bool [B_root, L]: layers that ran, recorded by run_layer
    root: HFTokenBatch | None = None
    rows: torch.Tensor | None = None  # rows of ``root`` this batch holds (None: all)

    def select(self, rows: torch.Tensor) -> HFTokenBatch:
        batch = self.hidden.shape[0]
        memo: dict = {}
        calls = [(_select(a, rows, batch, "", memo), _select(k, rows, batch, "", memo)) for a, k in self.calls]
        root = self.root or self
        root_rows = rows.cpu() if self.rows is None else self.rows[rows.cpu()]
        return HFTokenBatch(
            hidden=self.hidden[rows],
            vision_mask=self.vision_mask[rows],
            text_mask=self.text_mask[rows],
            attention_mask=self.attention_mask[rows],
            layer_kwargs=calls[0][1] if calls else {},
            calls=calls,
            lengths=None if self.lengths is None else self.lengths[rows.cpu()],
            last_position=None if self.last_position is None else self.last_position[rows.cpu()],
            cache=self.cache,
            prompt=None,
            executed=None,
            root=root,
            rows=root_rows,
        )

    def mark_executed(self, index: int) -> None:
        root = self.root or self
        if root.executed is not None:
            root.executed[slice(None) if self.rows is None else self.rows, index] = True
