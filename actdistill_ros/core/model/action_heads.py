"""Action heads: what turns the decoder stack's final token states into an action chunk.

Every head maps normalised-action space in and out and offers two calls:

* ``head(hidden, valid) -> [B, H, A]``: inference (what the policy executes and what the
  benchmarks compare);
* ``head.loss(hidden, valid, target) -> scalar``: the head's own task loss against a
  normalised ground-truth chunk, used to train the teacher and as stage 2's task term.

``hidden`` is the final-normed token states [B, T, D] and ``valid`` the bool token mask
[B, T]. Nothing here knows about TinyVLA: any :class:`~actdistill_ros.core.model.teacher.VLATeacher`
builds one with :func:`build_action_head` and sets it as ``action_head``.

Kinds (``ActionHeadConfig.kind``):

* ``regression`` -- attention pooling + MLP, the whole chunk at once, MSE (the original head,
  parameter names unchanged so existing checkpoints load bit-exactly);
* ``tokens`` -- OpenVLA-style discrete actions: each of the chunk's H*A values is one token
  (``bins`` uniform bins per dimension over [-r, r] normalised units); a small causal decoder
  cross-attends to the backbone states and predicts token k from tokens < k; cross-entropy,
  greedy decoding with a key/value cache at inference. Unlike OpenVLA, whose LLM itself emits
  the tokens, the tokens here come from a separate small decoder (routing decides once per
  observation which backbone layers run, and the backbone runs once);
* ``flow`` -- pi0 / CogACT-style flow matching: a velocity field v(x_t, t | backbone states)
  on noisy chunks, x_t = t * noise + (1 - t) * action, trained with MSE(v, noise - action),
  sampled with fixed-step Euler from t = 1 (noise) to t = 0. The initial noise is drawn from a
  generator seeded with ``flow_noise_seed`` on every call (default 0), so the same inputs give
  the same actions and teacher and student are compared on identical noise; ``None`` draws
  fresh noise from the global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ACTION_HEAD_KINDS, ActionHeadConfig
from ..typed_config import ConfigError


class ActionHead(nn.Module):
    """Base class: ``forward`` predicts a normalised chunk, ``loss`` is the task loss."""

    kind = "base"

    def __init__(self, chunk_size: int, action_dim: int) -> None:
        super().__init__()
        self.chunk_size, self.action_dim = chunk_size, action_dim

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def loss(self, hidden: torch.Tensor, valid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover


class RegressionChunkHead(ActionHead):
    """Attention pooling over valid tokens -> MLP -> [B, chunk, 7]; MSE task loss.

    With ``spatial_dim > 0`` (and ``spatial_tokens`` vision tokens leading the sequence, as in
    TinyVLA) the MLP also reads every vision token, projected to ``spatial_dim`` and flattened
    in image order: an absolute-position read-out (as ACT-style heads keep the feature map's
    layout). On the simulated reach task the pooled head alone did not get past predicting the
    mean action within a CPU training budget; with the spatial read-out the teacher learned it."""

    kind = "regression"

    def __init__(self, hidden: int, chunk_size: int, action_dim: int, spatial_dim: int = 0,
                 spatial_tokens: int = 0) -> None:
        super().__init__(chunk_size, action_dim)
        if spatial_dim and spatial_tokens <= 0:
            raise ConfigError("action_head.spatial_dim needs a teacher whose vision tokens lead the sequence "
                              "in a fixed number (TinyVLA); this teacher does not declare them")
        self.spatial_tokens = spatial_tokens if spatial_dim else 0
        self.score = nn.Linear(hidden, 1)
        if spatial_dim:
            self.spatial = nn.Linear(hidden, spatial_dim)
            width = hidden + spatial_dim * spatial_tokens
        else:
            width = hidden
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, chunk_size * action_dim))

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        scores = self.score(hidden).squeeze(-1).masked_fill(~valid, float("-inf"))
        pooled = torch.einsum("bt,btd->bd", scores.softmax(-1), hidden)
        if self.spatial_tokens:
            layout = self.spatial(hidden[:, : self.spatial_tokens]).flatten(1)
            pooled = torch.cat([pooled, layout], dim=1)
        return self.mlp(pooled).view(-1, self.chunk_size, self.action_dim)

    def loss(self, hidden: torch.Tensor, valid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self(hidden, valid), target)


# ------------------------------------------------------------------------------------------
# A small transformer block shared by the token and flow heads
# ------------------------------------------------------------------------------------------


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        return x.view(b, t, self.heads, w // self.heads).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(
        self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self.split(self.q(x)), k, v, attn_mask=mask, is_causal=causal)
        b, h, t, d = out.shape
        return self.out(out.transpose(1, 2).reshape(b, t, h * d))


class _Block(nn.Module):
    """Pre-norm: self-attention (optionally causal) -> cross-attention to the backbone -> MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_mlp = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = _Attention(width, heads)
        self.cross_attn = _Attention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(
        self,
        x: torch.Tensor,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor,
        causal: bool = False,
        cache: dict | None = None,
    ) -> torch.Tensor:
        """``cache`` (incremental decoding): holds this block's past self-attention keys/values;
        ``x`` is then only the new positions and attends to all cached ones."""
        h = self.norm_self(x)
        k, v = self.self_attn.keys_values(h)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
            causal = causal and x.shape[1] > 1  # a single new query may see every cached position
        x = x + self.self_attn(h, k, v, causal=causal)
        x = x + self.cross_attn(self.norm_cross(x), *memory_kv, mask=memory_mask)
        return x + self.mlp(self.norm_mlp(x))


class _ConditionedDecoder(nn.Module):
    """Backbone states -> memory (projected to the head width) + a stack of blocks.

    Two conditioning paths: cross-attention to every valid backbone token, and an
    attention-pooled summary of them (as in the regression head) added to every decoder input."""

    def __init__(self, hidden: int, cfg: ActionHeadConfig) -> None:
        super().__init__()
        self.memory_proj = nn.Linear(hidden, cfg.width)
        self.pool_score = nn.Linear(hidden, 1)
        self.pool_proj = nn.Linear(hidden, cfg.width)
        self.blocks = nn.ModuleList(_Block(cfg.width, cfg.heads) for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(cfg.width)

    def memory(self, hidden: torch.Tensor, valid: torch.Tensor):
        """(per block (keys, values) of the backbone states, the [B,1,1,T] mask, the pooled
        summary [B, 1, width]), computed once per forward pass."""
        memory = self.memory_proj(hidden)
        scores = self.pool_score(hidden).squeeze(-1).masked_fill(~valid, float("-inf"))
        pooled = self.pool_proj(torch.einsum("bt,btd->bd", scores.softmax(-1), hidden))[:, None]
        return [block.cross_attn.keys_values(memory) for block in self.blocks], valid[:, None, None, :], pooled

    def forward(self, x: torch.Tensor, memory, causal: bool = False, caches: list | None = None) -> torch.Tensor:
        memory_kv, mask, pooled = memory
        x = x + pooled
        for i, block in enumerate(self.blocks):
            x = block(x, memory_kv[i], mask, causal=causal, cache=None if caches is None else caches[i])
        return self.out_norm(x)


# ------------------------------------------------------------------------------------------
# Discrete action tokens, decoded autoregressively
# ------------------------------------------------------------------------------------------


class TokenActionHead(ActionHead):
    """Chunk -> H*A tokens (step-major: step 0 dims 0..A-1, step 1, ...), one causal decoder."""

    kind = "tokens"

    def __init__(self, hidden: int, chunk_size: int, action_dim: int, cfg: ActionHeadConfig) -> None:
        super().__init__(chunk_size, action_dim)
        self.bins, self.token_range = cfg.bins, float(cfg.token_range)
        self.length = chunk_size * action_dim
        self.decoder = _ConditionedDecoder(hidden, cfg)
        self.embed = nn.Embedding(cfg.bins + 1, cfg.width)  # the last id is BOS
        self.position = nn.Parameter(torch.zeros(1, self.length, cfg.width))
        nn.init.normal_(self.position, std=0.02)
        self.logits = nn.Linear(cfg.width, cfg.bins)

    @property
    def bos(self) -> int:
        return self.bins

    def tokenize(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised chunk [B, H, A] -> token ids [B, H*A] (values outside the range clamp)."""
        scaled = (actions.float() + self.token_range) / (2 * self.token_range) * self.bins
        return scaled.floor().clamp(0, self.bins - 1).long().flatten(1)

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [B, H*A] -> bin centres [B, H, A] (normalised units)."""
        width = 2 * self.token_range / self.bins
        centres = -self.token_range + (tokens.float() + 0.5) * width
        return centres.view(-1, self.chunk_size, self.action_dim)

    def _inputs(self, previous: torch.Tensor, start: int) -> torch.Tensor:
        return self.embed(previous) + self.position[:, start : start + previous.shape[1]]

    def token_logits(self, hidden: torch.Tensor, valid: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits [B, H*A, bins] for every position given the true previous tokens."""
        bos = torch.full_like(tokens[:, :1], self.bos)
        x = self._inputs(torch.cat([bos, tokens[:, :-1]], dim=1), 0)
        return self.logits(self.decoder(x, self.decoder.memory(hidden, valid), causal=True))

    def loss(self, hidden: torch.Tensor, valid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenize(target)
        logits = self.token_logits(hidden, valid, tokens)
        return F.cross_entropy(logits.float().reshape(-1, self.bins), tokens.reshape(-1))

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Greedy decoding, one token per step, with cached keys/values (memory projected once)."""
        memory = self.decoder.memory(hidden, valid)
        caches: list[dict] = [{} for _ in self.decoder.blocks]
        previous = torch.full((hidden.shape[0], 1), self.bos, dtype=torch.long, device=hidden.device)
        tokens = []
        for position in range(self.length):
            out = self.decoder(self._inputs(previous, position), memory, causal=True, caches=caches)
            previous = self.logits(out[:, -1:]).argmax(-1)
            tokens.append(previous)
        return self.detokenize(torch.cat(tokens, dim=1)).to(hidden.dtype)


# ------------------------------------------------------------------------------------------
# Flow matching (pi0 / CogACT style)
# ------------------------------------------------------------------------------------------


def _time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1]: [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FlowMatchingHead(ActionHead):
    """Velocity field on noisy chunks conditioned on the backbone; Euler sampling."""

    kind = "flow"

    def __init__(self, hidden: int, chunk_size: int, action_dim: int, cfg: ActionHeadConfig) -> None:
        super().__init__(chunk_size, action_dim)
        self.steps, self.noise_seed, self.repeats = cfg.flow_steps, cfg.flow_noise_seed, cfg.flow_loss_repeats
        width = cfg.width
        self.decoder = _ConditionedDecoder(hidden, cfg)
        self.action_in = nn.Linear(action_dim, width)
        self.position = nn.Parameter(torch.zeros(1, chunk_size, width))
        nn.init.normal_(self.position, std=0.02)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.velocity_out = nn.Linear(width, action_dim)

    def velocity(self, noisy: torch.Tensor, t: torch.Tensor, memory) -> torch.Tensor:
        """v(x_t, t): noisy [B, H, A], t [B] -> [B, H, A]."""
        time = self.time_mlp(_time_features(t, self.position.shape[-1]).to(noisy.dtype))
        x = self.action_in(noisy) + self.position + time[:, None]
        return self.velocity_out(self.decoder(x, memory))

    def loss(self, hidden: torch.Tensor, valid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        memory_kv, mask, pooled = self.decoder.memory(hidden, valid)
        if self.repeats > 1:  # several noise levels per sample share one projected memory
            memory_kv = [
                (k.repeat_interleave(self.repeats, 0), v.repeat_interleave(self.repeats, 0)) for k, v in memory_kv
            ]
            mask = mask.repeat_interleave(self.repeats, 0)
            pooled = pooled.repeat_interleave(self.repeats, 0)
            target = target.repeat_interleave(self.repeats, 0)
        target = target.to(hidden.dtype)
        noise = torch.randn_like(target)
        t = torch.rand(target.shape[0], device=target.device, dtype=target.dtype)
        noisy = t[:, None, None] * noise + (1 - t[:, None, None]) * target
        predicted = self.velocity(noisy, t, (memory_kv, mask, pooled))
        return F.mse_loss(predicted.float(), (noise - target).float())

    def initial_noise(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        shape = (batch, self.chunk_size, self.action_dim)
        if self.noise_seed is None:
            return torch.randn(shape, device=device).to(dtype)
        generator = torch.Generator(device=device).manual_seed(int(self.noise_seed))
        return torch.randn(shape, generator=generator, device=device).to(dtype)

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        memory = self.decoder.memory(hidden, valid)
        x = self.initial_noise(hidden.shape[0], hidden.device, hidden.dtype)
        dt = 1.0 / self.steps
        for i in range(self.steps):
            t = torch.full((x.shape[0],), 1.0 - i * dt, device=x.device, dtype=x.dtype)
            x = x - dt * self.velocity(x, t, memory)
        return x


def build_action_head(cfg: ActionHeadConfig, hidden_size: int, chunk_size: int, action_dim: int,
                      leading_vision_tokens: int = 0) -> ActionHead:
    """The head ``cfg.kind`` names, for a backbone of width ``hidden_size``
    (``leading_vision_tokens``: how many vision tokens start every sequence, 0 = unknown)."""
    if cfg.kind == "regression":
        return RegressionChunkHead(hidden_size, chunk_size, action_dim, cfg.spatial_dim, leading_vision_tokens)
    if cfg.kind == "tokens":
        return TokenActionHead(hidden_size, chunk_size, action_dim, cfg)
    if cfg.kind == "flow":
        return FlowMatchingHead(hidden_size, chunk_size, action_dim, cfg)
    raise ConfigError(f"unknown action head {cfg.kind!r}; valid: {', '.join(ACTION_HEAD_KINDS)}")
