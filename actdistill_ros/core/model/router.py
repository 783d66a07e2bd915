"""Routers: which decoder layers run for each sample, decided once before layer 0.

Three kinds share one interface (``forward(embeddings, vision_mask, text_mask) -> gate
probabilities [B, L]``; a layer runs where its gate passes the threshold):

* ``learned`` (ActDistill): vision and language spans each projected + normalised, mean+max
  pooled, concatenated; a linear head gives one logit per layer; gate = sigmoid(logit - offset).
* ``fixed``: the same layers for every input (static layer pruning; a baseline).
* ``random``: ``random_layers`` layers drawn at random for every sample and pass (a baseline).

**The compute budget.** A learned router left to a loss term alone settles wherever the task
gradient and the penalty balance (in practice far from the target, or on one static route).
Here the threshold itself meets the budget. In training every batch is cut at its own exact
quantile (``budget_offset``: the keep ratio of its (sample, layer) scores pass, the highest
first; as Mixture-of-Depths' top-k routing), so every step spends the budget and the router only
decides *where*; ``logit_offset``, the threshold inference uses, is the running average of those
cuts (:meth:`Router.track_offset`), and :meth:`Router.calibrate` finally sets it to the exact
quantile over all training inputs, so held-out inputs spend the budget too. Two cheaper designs
failed on the simulated arm (ad-hoc runs, not kept as options): an integral controller on the
executed fraction oscillated between routes (the fraction is a step function of the threshold
when scores cluster), and a running threshold applied as-is ran 0.65-0.75 of the layers against
a 0.5 target (each optimiser step pushed the scores just below the bar over it; every layer helps
the task loss).

**Depth per input.** The batch quantile lets the budget move between samples: on the simulated
arm (keep 0.5 of 6 layers) the router gave 12% of the held-out inputs one layer and 23% four, at a
held-out error of 1.32x the teacher's; the same student running every input's own top 3 read
1.13x, and a student trained so (``min_layers`` = keep_ratio x L: every input runs exactly its own
top k, the cut then only decides which) 1.06x. Set ``min_layers`` so unless the inputs really
differ in the depth they need (docs/results/README.md).

**What the router learns from.** ActDistill's: the straight-through gate gradient of the
distillation loss (``straight_through_gates``). ``RouterConfig.credit = "measured"``: each layer's
measured effect on the action error instead (``training/layer_credit.py``), after the gradient was
found to rank the layers nearly at random against their removal cost at default size.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import RouterConfig


def _masked_mean_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    count = m.sum(1).clamp_min(1.0)
    mean = (x * m).sum(1) / count
    maxed = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    maxed = torch.where(torch.isfinite(maxed), maxed, torch.zeros_like(maxed))  # empty span -> 0
    return torch.cat([mean, maxed], dim=-1)


def _span_tokens(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One sample's tokens [T, D] where ``mask`` [T] is set."""
    return tokens.index_select(0, mask.nonzero().squeeze(1))


def _pooled(proj: nn.Sequential, span: torch.Tensor) -> torch.Tensor:
    """[1, 2r]: mean and max over a non-empty span's projected, normalised tokens (functional
    calls: two module calls' hook dispatch less)."""
    lin, norm = proj
    y = nn.functional.layer_norm(nn.functional.linear(span, lin.weight, lin.bias), norm.normalized_shape,
                                 norm.weight, norm.bias, norm.eps)
    return torch.cat([y.mean(0, keepdim=True), y.amax(0, keepdim=True)], dim=1)


class Router(nn.Module):
    """The learned ActDistill router (see the module docstring for the budget controller)."""

    kind = "learned"

    def __init__(self, hidden_size: int, num_layers: int, cfg: RouterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        r = cfg.router_dim
        self.vision_proj = nn.Sequential(nn.Linear(hidden_size, r), nn.LayerNorm(r))
        self.text_proj = nn.Sequential(nn.Linear(hidden_size, r), nn.LayerNorm(r))
        self.gate_head = nn.Linear(4 * r, num_layers)
        nn.init.normal_(self.gate_head.weight, std=0.01)
        nn.init.constant_(self.gate_head.bias, cfg.init_bias)
        # the gate threshold in logit space (0 = sigmoid 0.5); exported with the weights
        self.register_buffer("logit_offset", torch.zeros(()))
        self._instruction_memo: tuple | None = None  # (weights' versions, text span, _instruction_part)
        self._memo_weights: tuple[torch.Tensor, ...] | None = None  # what the memo's value reads
        self.register_load_state_dict_post_hook(lambda module, keys: module._forget_instruction())

    def _forget_instruction(self) -> None:
        self._instruction_memo = self._memo_weights = None

    def _apply(self, fn, recurse: bool = True):
        self._forget_instruction()  # .to(), .half(), ...: the weights may be new tensors
        return super()._apply(fn, recurse)

    def logits(self, embeddings: torch.Tensor, vision_mask: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Raw per-layer scores [B, L], before the threshold offset.

        Both spans in one pass (one projection to 2r, one normalisation, one pooling over a
        [B, T, 2, r] view): the same function as projecting and pooling each span on its own,
        in about half the kernel launches, which is most of the router's cost at small sizes."""
        if embeddings.shape[0] == 1 and embeddings.device.type == "cpu" and not torch.compiler.is_compiling():
            return self._one_sample_logits(embeddings, vision_mask, text_mask)
        (v_lin, v_norm), (t_lin, t_norm) = self.vision_proj, self.text_proj
        if v_norm.eps != t_norm.eps:  # (never with our configs) the per-span path
            return self.gate_head(torch.cat([_masked_mean_max(self.vision_proj(embeddings), vision_mask),
                                             _masked_mean_max(self.text_proj(embeddings), text_mask)], dim=-1))
        r = v_lin.out_features
        y = nn.functional.linear(embeddings, torch.cat([v_lin.weight, t_lin.weight]),
                                 torch.cat([v_lin.bias, t_lin.bias])).unflatten(-1, (2, r))
        y = torch.addcmul(torch.stack([v_norm.bias, t_norm.bias]), nn.functional.layer_norm(y, (r,), eps=v_norm.eps),
                          torch.stack([v_norm.weight, t_norm.weight]))  # [B, T, 2, r]
        masks = torch.stack([vision_mask, text_mask], dim=-1).unsqueeze(-1)  # [B, T, 2, 1]
        weights = masks.to(y.dtype)
        mean = (y * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        maxed = y.masked_fill(~masks, float("-inf")).amax(1)
        maxed = torch.where(torch.isfinite(maxed), maxed, 0.0)  # empty span -> 0
        return self.gate_head(torch.stack([mean, maxed], dim=2).flatten(1))  # [v_mean, v_max, t_mean, t_max]

    def _one_sample_logits(self, embeddings: torch.Tensor, vision_mask: torch.Tensor,
                           text_mask: torch.Tensor) -> torch.Tensor:
        """The same function for one sample on a CPU (a robot's control loop): each span's own
        tokens through its own projection only, pooled without masks: half the projection and
        normalisation work of the batched form (which projects every token twice and masks the
        wrong span out). The token indices are read on the host, free on a CPU (on a GPU the
        batched form avoids that sync; compiled, it keeps the shapes static)."""
        pooled = []
        for proj, mask in ((self.vision_proj, vision_mask), (self.text_proj, text_mask)):
            span = _span_tokens(embeddings[0], mask[0])
            empty = span.shape[0] == 0  # an empty span pools to 0, as in the batched form
            pooled.append(embeddings.new_zeros(1, 2 * self.cfg.router_dim) if empty else _pooled(proj, span))
        return self.gate_head(torch.cat(pooled, dim=1))

    def forward(self, embeddings: torch.Tensor, vision_mask: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """-> gate probabilities [B, L] in (0, 1)."""
        if embeddings.shape[0] == 1 and embeddings.device.type == "cpu" and not torch.is_grad_enabled() \
                and not torch.compiler.is_compiling():
            return self._one_sample_probs(embeddings[0], vision_mask[0], text_mask[0])
        return torch.sigmoid(self.logits(embeddings, vision_mask, text_mask) - self.logit_offset)

    def _one_sample_probs(self, tokens: torch.Tensor, vision_mask: torch.Tensor,
                          text_mask: torch.Tensor) -> torch.Tensor:
        """Inference for one sample on a CPU, in as few tensor ops as the function allows (each op
        costs more than its arithmetic here: dispatch, and caches gone cold between camera
        frames). The gate head is split by span: ``sigmoid(vision @ W_v^T + (W_t @ text + b -
        offset))``; the instruction's part is memoised (``_instruction_part``): a robot's
        instruction stays the same for hundreds of frames, so per frame only the image's half
        of the router runs."""
        text_part, vision_head = self._instruction_part(tokens, text_mask)
        span = _span_tokens(tokens, vision_mask)
        if span.shape[0] == 0:  # an empty span pools to 0, as in the batched form
            return torch.sigmoid(text_part)
        return torch.sigmoid(torch.addmm(text_part, _pooled(self.vision_proj, span), vision_head))

    def _instruction_part(self, tokens: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (``W_t @ pooled(text span) + b - offset`` [1, L], ``W_v^T`` [2r, L] contiguous).
        Memoised on the span's exact token states and on the storage and in-place version of
        every weight read (an optimiser step or ``track_offset`` changes a version;
        ``load_state_dict`` and ``.to()`` clear the memo), so a changed instruction, teacher or
        router is never served a stale value."""
        span = _span_tokens(tokens, text_mask)
        if self._memo_weights is None:
            (lin, norm), head = self.text_proj, self.gate_head
            self._memo_weights = (lin.weight, lin.bias, norm.weight, norm.bias, head.weight, head.bias,
                                  self.logit_offset)
        weights = tuple((t.data_ptr(), t._version) for t in self._memo_weights)
        memo = self._instruction_memo
        if memo is not None and memo[0] == weights and memo[1].shape == span.shape and torch.equal(memo[1], span):
            return memo[2], memo[3]
        width = 2 * self.cfg.router_dim
        head = self.gate_head
        part = (head.bias - self.logit_offset).unsqueeze(0)
        if span.shape[0]:  # an empty span pools to 0, as in the batched form
            part = torch.addmm(part, _pooled(self.text_proj, span), head.weight[:, width:].t())
        vision_head = head.weight[:, :width].t().contiguous()
        self._instruction_memo = (weights, span, part, vision_head)
        return part, vision_head

    @torch.no_grad()
    def rank_layers(self, levels: list[list[int]], margin: float = 1.0) -> None:
        """Start every input on one ranked route: the gate biases fall by ``margin`` (logits) per
        level, ``levels[0]`` highest, so the budget warm-up's batch cut drops the layers of the last
        level first and a top-k router ends on ``levels[0]``. The per-input weights stay as
        initialised (near zero: std 0.01 gives logits of ~0.1), so a margin of one logit lets the
        router reorder neighbouring levels within a run but not jump across the ranking at once."""
        for level, layers in enumerate(levels):
            self.gate_head.bias[list(layers)] = self.cfg.init_bias - margin * level

    @torch.no_grad()
    def track_offset(self, batch_offset: float, momentum: float) -> None:
        """Move the inference offset ``momentum`` of the way towards a training batch's exact
        budget offset (``budget_offset`` of its scores): a running average over batches."""
        self.logit_offset += momentum * (float(batch_offset) - self.logit_offset)

    @torch.no_grad()
    def calibrate(self, logits: torch.Tensor, keep_ratio: float, min_layers: int, threshold: float = 0.5) -> float:
        """Set the offset so that exactly ``keep_ratio`` of the layers run over ``logits`` [N, L]
        (raw scores of representative inputs) at gate ``threshold``, counting the ``min_layers``
        every sample keeps anyway. Returns the executed fraction reached (ties can only round it)."""
        self.logit_offset.fill_(budget_offset(logits, keep_ratio, min_layers, threshold))
        probs = torch.sigmoid(logits.float() - self.logit_offset)
        return hard_decisions(probs, threshold, min_layers=min_layers).float().mean().item()


def budget_offset(logits: torch.Tensor, keep_ratio: float, min_layers: int, threshold: float = 0.5) -> float:
    """The logit offset at which ``keep_ratio`` of the entries of ``logits`` [N, L] pass gate
    ``threshold``, the top-``min_layers`` of every row counted as passing anyway: midway between
    the last score kept and the first dropped, so small changes of the scores change no decision."""
    logits = logits.detach().float()
    n, num_layers = logits.shape
    forced = top_layers_mask(logits, min_layers)
    budget = round(keep_ratio * n * num_layers) - int(forced.sum())
    optional = logits[~forced]
    if optional.numel() == 0:
        cut = 0.0
    elif budget <= 0:
        cut = optional.max().item() + 1.0
    elif budget >= optional.numel():
        cut = optional.min().item() - 1.0
    else:
        ranked = optional.sort(descending=True).values
        cut = 0.5 * (ranked[budget - 1] + ranked[budget]).item()
    # sigmoid(logit - offset) >= threshold  <=>  logit >= offset + logit(threshold)
    return cut - torch.logit(torch.tensor(float(threshold))).item()


class FixedRouter(nn.Module):
    """One route for every input: the layers in ``cfg.fixed_layers`` (static layer pruning)."""

    kind = "fixed"

    def __init__(self, hidden_size: int, num_layers: int, cfg: RouterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        route = torch.zeros(num_layers)
        route[list(cfg.fixed_layers)] = 1.0
        self.register_buffer("route", route)

    def forward(self, embeddings: torch.Tensor, vision_mask: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        return self.route.to(embeddings.dtype).expand(embeddings.shape[0], -1)


class RandomRouter(nn.Module):
    """``cfg.random_layers`` layers drawn uniformly for every sample and every pass (from torch's
    global generator: seeded runs repeat, and a resumed training run replays the same draws)."""

    kind = "random"

    def __init__(self, hidden_size: int, num_layers: int, cfg: RouterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_layers = num_layers

    def forward(self, embeddings: torch.Tensor, vision_mask: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        scores = torch.rand(embeddings.shape[0], self.num_layers, device=embeddings.device)
        return top_layers_mask(scores, self.cfg.random_layers).to(embeddings.dtype)


ROUTERS = {cls.kind: cls for cls in (Router, FixedRouter, RandomRouter)}


def build_router(hidden_size: int, num_layers: int, cfg: RouterConfig) -> nn.Module:
    cfg.check_layers(num_layers)
    return ROUTERS[cfg.kind](hidden_size, num_layers, cfg)


def top_layers_mask(scores: torch.Tensor, count: int) -> torch.Tensor:
    """bool [B, L]: each row's ``count`` highest scores (all of them when count >= L, none at 0);
    of equal scores the lower layer."""
    count = max(0, min(int(count), scores.shape[1]))
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if count:  # a stable sort, not topk: equal scores go to the lower layer, on every device
        mask.scatter_(1, scores.sort(dim=1, descending=True, stable=True).indices[:, :count], True)
    return mask


def hard_decisions(probs: torch.Tensor, threshold: float, max_layers: int | None = None,
                   min_layers: int = 0) -> torch.Tensor:
    """Inference decisions [B, L] bool: gate >= threshold, at least the top-``min_layers`` gates
    (no sample runs an empty stack) and optionally at most the top-``max_layers``.

    On a CPU one sample is decided on the host (``_one_row_decisions``), and in a batch the top-k
    corrections are skipped when no row needs them (the same result: a row with >= min_layers
    passing gates already holds its top min_layers; one with <= max_layers holds only its top
    ones); on a GPU either would be a host sync, so the corrections always run there."""
    if probs.shape[0] == 1 and probs.device.type == "cpu":
        return _one_row_decisions(probs, threshold, max_layers, min_layers)
    keep = probs >= threshold
    lazy = probs.device.type == "cpu"
    if min_layers and not (lazy and bool((keep.sum(1) >= min_layers).all())):
        keep = keep | top_layers_mask(probs, min_layers)
    capped = max_layers is not None and max_layers < probs.shape[1]
    if capped and not (lazy and bool((keep.sum(1) <= max_layers).all())):
        keep = keep & top_layers_mask(probs, max_layers)
    return keep


def _one_row_decisions(probs: torch.Tensor, threshold: float, max_layers: int | None,
                       min_layers: int) -> torch.Tensor:
    """``hard_decisions`` for one sample on a CPU, on the host: a handful of Python comparisons
    instead of up to a dozen tensor ops."""
    keep = [False] * probs.shape[1]
    for index in one_sample_route(probs[0].tolist(), threshold, max_layers, min_layers):
        keep[index] = True
    return torch.tensor([keep], dtype=torch.bool)


def one_sample_route(scores: list[float], threshold: float, max_layers: int | None = None,
                     min_layers: int = 0) -> tuple[int, ...]:
    """The layers one sample runs (ascending), from its gate probabilities on the host: the rule
    and the tie-break of ``hard_decisions`` / ``top_layers_mask`` (equal scores: the lower layer)."""
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties to the lower layer
    keep = [score >= threshold for score in scores]
    for index in ranked[:max(0, min_layers)]:
        keep[index] = True
    if max_layers is not None:
        allowed = set(ranked[:max(0, max_layers)])
        keep = [k and i in allowed for i, k in enumerate(keep)]
    return tuple(i for i, k in enumerate(keep) if k)


def straight_through_gates(probs: torch.Tensor, threshold: float, min_layers: int = 0) -> torch.Tensor:
    """Forward: the 0/1 decision inference will make; backward: the sigmoid's gradient."""
    hard = hard_decisions(probs.detach(), threshold, min_layers=min_layers).to(probs.dtype)
    return hard + probs - probs.detach()
