"""TinyVLA: the built-in teacher. Small enough to train on a CPU, shaped like a real VLA.

image -> patch embedding -> projector (vision tokens); instruction -> byte-level tokens
-> embedding (text tokens); [vision | text] -> transformers ``LlamaDecoderLayer`` stack
(bidirectional attention over valid tokens, rotary positions) -> RMSNorm -> an action head
predicting a chunk of H future 7-DoF end-effector actions: ``cfg.action_head.kind`` picks
regression (attention-pooled MLP, the default), discrete tokens or flow matching
(``action_heads.py``).
"""

from __future__ import annotations

import hashlib
import logging
import re

import numpy as np
import torch
from torch import nn
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding

from ..config import TinyVLAConfig
from ..data.images import resize_rgb
from .action_heads import build_action_head
from .teacher import ActionNormalizer, TokenBatch, VLATeacher

MIN_TEXT_TOKENS = 258  # BOS + 256 bytes (or words) + EOS: the shortest limit any TinyVLA has
log = logging.getLogger(__name__)


class ByteTokenizer:
    """UTF-8 bytes as tokens: needs no download and no vocabulary file. Reads at least 256 bytes
    (``max_text_tokens`` raises that); longer text is truncated, with a warning once."""

    kind = "bytes"
    PAD, BOS, EOS = 0, 1, 2
    OFFSET = 3
    vocab_size = 256 + OFFSET
    unit = "bytes"

    def __init__(self, max_tokens: int) -> None:
        # positions are rotary, so no weight limits the length: every model reads real sentences
        self.max_tokens = max(max_tokens, MIN_TEXT_TOKENS)
        self._warned_truncation = False

    def pieces(self, text: str) -> list[int]:
        return [b + self.OFFSET for b in text.encode("utf-8")]

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("instruction is empty")
        pieces = self.pieces(text.strip())
        limit = self.max_tokens - 2
        if len(pieces) > limit:
            if not self._warned_truncation:  # once per model: a long instruction is repeated every tick
                self._warned_truncation = True
                log.warning("instruction is %d %s long; this model reads the first %d (max_text_tokens=%d); "
                            "this warning is shown once", len(pieces), self.unit, limit, self.max_tokens)
            pieces = pieces[:limit]
        return [self.BOS, *pieces, self.EOS]

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (ids [B, T] int64 padded with PAD to the longest text, mask [B, T] bool). Padding is
        masked out of attention, so the width changes no output, only the cost."""
        encoded = [self.encode(text) for text in texts]
        ids = torch.full((len(texts), max((len(e) for e in encoded), default=2)), self.PAD, dtype=torch.long)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids, ids != self.PAD


class HashWordTokenizer(ByteTokenizer):
    """Words (and punctuation marks), lower-cased, hashed into ``buckets`` ids: no download, no
    vocabulary file, and one token per word. A word is what the policy must ground ("red"), so
    a sentence costs its word count in tokens, not its byte count (a 200-byte instruction is
    ~40 tokens); distinct words rarely share a bucket (a hash collision merges two words)."""

    kind = "words"
    buckets = 4096
    vocab_size = buckets + ByteTokenizer.OFFSET
    unit = "words"
    _WORD = re.compile(r"\w+|[^\w\s]")

    def pieces(self, text: str) -> list[int]:
        return [self.OFFSET + int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
                % self.buckets for word in self._WORD.findall(text.lower())]


TOKENIZERS = {cls.kind: cls for cls in (ByteTokenizer, HashWordTokenizer)}


def images_to_uint8_batch(images, size: int) -> torch.Tensor:
    """uint8 RGB images (one [H,W,3] or a batch [B,H,W,3]) -> uint8 tensor [B, size, size, 3].

    Other sizes are resized by ``core.data.images.resize_rgb``, the resize of bag ingestion; wrong dtype,
    channel count or non-finite content are errors.
    """
    array = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"images must be RGB [H,W,3] or [B,H,W,3], got shape {list(array.shape)}")
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB, got dtype {array.dtype}")
    if array.shape[1:3] != (size, size):
        array = np.stack([resize_rgb(img, (size, size)) for img in array])
    return torch.from_numpy(np.ascontiguousarray(array))


class PatchVisionEncoder(nn.Module):
    """Pixels -> one token per ``patch_size`` patch: a stem, learned positions, a 2-layer MLP projector.

    Stems (``cfg.vision_stem``): ``patch`` is one linear patch embedding (a strided conv, as
    ViTs); ``conv`` is a small CNN of stride-2 3x3 convolutions down to the same grid. A linear
    patch embedding must place the gripper within a patch from raw pixels in one step; the
    convolutions build edge and blob features first, which is what a reaching policy needs from
    a 64 px camera (on the simulated arm the conv stem learned in far fewer steps)."""

    def __init__(self, cfg: TinyVLAConfig) -> None:
        super().__init__()
        if cfg.vision_stem == "conv":
            self.patch = conv_stem(cfg.patch_size, cfg.conv_channels, cfg.hidden_size)
        else:
            self.patch = nn.Conv2d(3, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.num_tokens = (cfg.image_size // cfg.patch_size) ** 2
        self.position = nn.Parameter(torch.zeros(1, self.num_tokens, cfg.hidden_size))
        nn.init.normal_(self.position, std=0.02)
        self.projector = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.hidden_size), nn.GELU(), nn.Linear(cfg.hidden_size, cfg.hidden_size)
        )
        self.norm = nn.LayerNorm(cfg.hidden_size) if cfg.vision_norm else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.projector(self.patch(pixels).flatten(2).transpose(1, 2) + self.position)
        return x if self.norm is None else self.norm(x)


def conv_stem(patch_size: int, channels: list[int], out_channels: int) -> nn.Sequential:
    """log2(patch_size) stages of 3x3 stride-2 convolution + GELU; stage widths from ``channels``
    (the last one repeated), the final stage ``out_channels`` wide (no activation: the tokens)."""
    stages = patch_size.bit_length() - 1
    widths = [channels[min(i, len(channels) - 1)] for i in range(stages - 1)] + [out_channels]
    layers: list[nn.Module] = []
    previous = 3
    for i, width in enumerate(widths):
        layers.append(nn.Conv2d(previous, width, kernel_size=3, stride=2, padding=1))
        if i < len(widths) - 1:
            layers.append(nn.GELU())
        previous = width
    return nn.Sequential(*layers)


class TinyVLA(VLATeacher):
    def __init__(self, cfg: TinyVLAConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.llama_config = LlamaConfig(
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_heads,
            max_position_embeddings=1024,
            vocab_size=TOKENIZERS[cfg.tokenizer].vocab_size,
            attention_dropout=0.0,
        )
        self.llama_config._attn_implementation = "sdpa"
        self.tokenizer = TOKENIZERS[cfg.tokenizer](cfg.max_text_tokens)
        self.vision = PatchVisionEncoder(cfg)
        self.text_embedding = nn.Embedding(self.tokenizer.vocab_size, cfg.hidden_size, padding_idx=ByteTokenizer.PAD)
        self.layers = nn.ModuleList(LlamaDecoderLayer(self.llama_config, i) for i in range(cfg.num_layers))
        self.rotary = LlamaRotaryEmbedding(self.llama_config)
        self.final_norm = LlamaRMSNorm(cfg.hidden_size, eps=self.llama_config.rms_norm_eps)
        self.action_head = build_action_head(cfg.action_head, cfg.hidden_size, cfg.chunk_size, cfg.action_dim,
                                             leading_vision_tokens=self.vision.num_tokens)
        self.normalizer = ActionNormalizer(cfg.action_dim)
        self.register_buffer("pixel_mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)

    @property
    def hidden_size(self) -> int:
        return self.cfg.hidden_size

    @property
    def chunk_size(self) -> int:
        return self.cfg.chunk_size

    @property
    def num_vision_tokens(self) -> int:
        return self.vision.num_tokens

    def vision_parameters(self) -> list[nn.Parameter]:
        """Patch embedding + positions (the projector MLP stays trainable when they freeze)."""
        return [*self.vision.patch.parameters(), self.vision.position]

    def prepare(self, images, instructions: list[str]) -> dict[str, torch.Tensor]:
        pixels = images_to_uint8_batch(images, self.cfg.image_size)
        if len(instructions) != pixels.shape[0]:
            raise ValueError(f"{pixels.shape[0]} images but {len(instructions)} instructions")
        input_ids, _ = self.tokenizer.batch(list(instructions))
        return {"pixels": pixels, "input_ids": input_ids}

    def embed(self, inputs: dict[str, torch.Tensor]) -> TokenBatch:
        device = self.text_embedding.weight.device
        dtype = self.text_embedding.weight.dtype
        pixels = inputs["pixels"].to(device)
        ids = inputs["input_ids"].to(device)
        x = pixels.permute(0, 3, 1, 2).to(dtype) / 255.0
        x = (x - self.pixel_mean.to(dtype)) / self.pixel_std.to(dtype)
        vision = self.vision(x)
        text = self.text_embedding(ids)
        hidden = torch.cat([vision, text], dim=1)
        batch_size, n_vision = vision.shape[:2]
        text_valid = ids != ByteTokenizer.PAD
        vision_valid = torch.ones(batch_size, n_vision, dtype=torch.bool, device=device)
        valid = torch.cat([vision_valid, text_valid], dim=1)
        vision_mask = torch.cat([vision_valid, torch.zeros_like(text_valid)], dim=1)
        text_mask = torch.cat([torch.zeros_like(vision_valid), text_valid], dim=1)
        positions = torch.arange(hidden.shape[1], device=device).unsqueeze(0)
        cos, sin = self.rotary(hidden, positions)
        # bidirectional attention over valid keys (prefix-LM style, as VLA action heads read
        # the whole context); [B, 1, T, T] boolean, True = may attend
        attn = valid[:, None, None, :].expand(-1, 1, hidden.shape[1], -1)
        return TokenBatch(
            hidden=hidden,
            vision_mask=vision_mask,
            text_mask=text_mask,
            attention_mask=valid,
            layer_kwargs={"attention_mask": attn, "position_embeddings": (cos, sin)},
        )

    def run_layer(self, index: int, hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        out = self.layers[index](hidden, **batch.layer_kwargs)
        return out[0] if isinstance(out, tuple) else out

