"""The core's configs: the model (TinyVLA, action head, graph probes, router) and its training
(teacher training, distillation: losses, optimiser, memory options, several processes), as
``actdistill train-teacher`` / ``distill`` and their YAML files take them. Typed, validated
dataclasses built with :mod:`actdistill_ros.core.typed_config`.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from pydantic import Field, model_validator

from .typed_config import ConfigError, Float, Int, config_dataclass

ACTION_HEAD_KINDS = ("regression", "tokens", "flow")
VISION_STEMS = ("patch", "conv")
TOKENIZER_KINDS = ("bytes", "words")


@config_dataclass
class ActionHeadConfig:
    """The action head on top of the decoder stack (any VLATeacher can use any kind).

    ``regression``: attention pooling + MLP -> the whole chunk at once, MSE task loss (the
    original head; checkpoints without this key are regression). ``tokens``: every action
    dimension of every chunk step discretised into ``bins`` uniform bins over
    [-token_range, token_range] (normalised units), decoded autoregressively by a small causal
    decoder that cross-attends to the backbone states; cross-entropy task loss, greedy decoding.
    ``flow``: a conditional velocity field on noisy chunks (pi0 / CogACT style), flow-matching
    task loss, ``flow_steps`` Euler steps from noise at inference.
    """

    kind: str = "regression"  # regression | tokens | flow
    width: Int = Field(128, gt=0)  # tokens/flow: decoder width
    layers: Int = Field(2, gt=0)  # tokens/flow: decoder blocks (self-attention + cross-attention + MLP)
    heads: Int = Field(4, gt=0)  # tokens/flow: attention heads
    bins: Int = Field(256, ge=2)  # tokens: bins per action dimension
    token_range: Float = Field(3.0, gt=0)  # tokens: bins cover [-r, r] normalised units (values outside are clamped)
    flow_steps: Int = Field(10, gt=0)  # flow: Euler steps at inference
    flow_noise_seed: Int | None = 0  # flow: seed of the initial noise at inference (null: fresh noise per call)
    flow_loss_repeats: Int = Field(1, gt=0)  # flow: noise/time draws per sample and training step (CogACT repeats 8x)
    # regression: > 0 also feeds the MLP every vision token's final state, projected to this width
    # and flattened in image order. Pooling alone discards where things are in the image, and
    # a reaching policy needs exactly that; 0 = pooling only (the original head).
    spatial_dim: Int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``action_head: flow`` means ``action_head: {kind: flow}``."""
        if not isinstance(data, str):
            return data
        if data.strip() not in ACTION_HEAD_KINDS:
            raise ValueError(f"unknown action head {data.strip()!r}; valid: {', '.join(ACTION_HEAD_KINDS)}")
        return {"kind": data.strip()}

    def validate(self) -> None:
        if self.kind not in ACTION_HEAD_KINDS:
            raise ConfigError(f"action_head.kind: unknown action head {self.kind!r}; "
                              f"valid: {', '.join(ACTION_HEAD_KINDS)}")
        if self.width % self.heads:
            raise ConfigError(f"action_head.width {self.width} must be divisible by action_head.heads {self.heads}")
        if self.spatial_dim and self.kind != "regression":
            raise ConfigError("action_head.spatial_dim: only the regression head has a spatial read-out")


@config_dataclass
class TinyVLAConfig:
    """Sizes of the built-in TinyVLA teacher."""

    image_size: Int = Field(128, gt=0)  # square RGB input; other sizes are resized (INTER_AREA)
    patch_size: Int = Field(16, gt=0)  # one vision token per patch_size x patch_size pixels
    # How pixels become vision tokens: ``patch`` (one linear patch embedding, as ViTs) or ``conv``
    # (a small strided CNN down to the same patch grid, ``conv_channels`` wide per stage).
    vision_stem: str = "patch"
    conv_channels: list[Int] = field(default_factory=lambda: [32, 64])
    # LayerNorm on the vision tokens after the projector. Without it the tokens vary across images
    # far less than the text embeddings' scale, and training sat on a predict-the-mean plateau (an
    # ad-hoc run on the simulated arm, not a shipped benchmark). False = the original model.
    vision_norm: bool = False
    hidden_size: Int = Field(256, gt=0)
    num_layers: Int = Field(8, gt=0)
    num_heads: Int = Field(4, gt=0)
    intermediate_size: Int = Field(512, gt=0)
    max_text_tokens: Int = Field(48, gt=0)  # incl. BOS/EOS; at least 258 in effect, longer text truncated (one warning)
    # ``bytes``: one token per UTF-8 byte (the original); ``words``: one token per word, hashed
    # into 4096 ids (see tiny_vla.HashWordTokenizer; the same budget takes ~5x longer sentences)
    tokenizer: str = "bytes"
    chunk_size: Int = Field(4, gt=0)  # future actions predicted per forward pass
    action_dim: Int = 7
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)  # regression | tokens | flow

    def validate(self) -> None:
        self.action_head.validate()
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.tokenizer not in TOKENIZER_KINDS:
            raise ConfigError(f"tokenizer: unknown tokenizer {self.tokenizer!r}; valid: {', '.join(TOKENIZER_KINDS)}")
        if self.vision_stem not in VISION_STEMS:
            raise ConfigError(f"vision_stem: unknown stem {self.vision_stem!r}; valid: {', '.join(VISION_STEMS)}")
        if self.vision_stem == "conv":
            stages = self.patch_size.bit_length() - 1
            if self.patch_size != 2 ** stages:
                raise ConfigError(f"vision_stem conv halves the image per stage: patch_size must be a power of 2, "
                                  f"got {self.patch_size}")
            if not self.conv_channels or any(c <= 0 for c in self.conv_channels):
                raise ConfigError(f"conv_channels must be a non-empty list of positive widths, "
                                  f"got {self.conv_channels}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if self.action_dim != 7:
            raise ConfigError(f"action_dim must be 7 (dx,dy,dz,droll,dpitch,dyaw,gripper), got {self.action_dim}")


MODEL_PRESETS: dict[str, TinyVLAConfig] = {
    # unit/integration tests: a few seconds per training epoch on 2 CPU cores
    "test": TinyVLAConfig(image_size=64, patch_size=16, hidden_size=64, num_layers=4, num_heads=4,
                          intermediate_size=128, max_text_tokens=32, chunk_size=4),
    # the benchmark size: 128 px, width 256, 8 layers (~7 M parameters)
    "default": TinyVLAConfig(),
}


@config_dataclass
class GraphConfig:
    """Graph-structured encapsulation (training only)."""

    graph_dim: Int = Field(128, gt=0)  # node feature width inside the graph module
    semantic_dim: Int = Field(128, gt=0)  # d_s (512 at 7B scale)
    top_k: Int = Field(8, gt=0)
    gat_layers: Int = Field(2, gt=0)


ROUTER_KINDS = ("learned", "fixed", "random")
ROUTE_STARTS = ("open", "greedy")
ROUTER_CREDITS = ("gradient", "measured")


@config_dataclass
class RouterConfig:
    """Which layers run per sample (``model/router.py``): ``learned`` (ActDistill), or the baselines
    ``fixed`` (the layers in ``fixed_layers`` for every input) and ``random`` (``random_layers``
    layers drawn per sample and pass)."""

    kind: str = "learned"
    router_dim: Int = Field(64, gt=0)
    threshold: Float = Field(0.5, gt=0, lt=1)
    init_bias: Float = 2.0  # gates start open (sigmoid(2) = 0.88): the student starts as the teacher
    # every sample runs at least its this many highest-gated layers (keep_ratio x L: exactly)
    min_layers: Int = Field(1, ge=0)
    fixed_layers: list[Int] = field(default_factory=list)  # kind fixed: the route (layer indices)
    random_layers: Int = Field(0, ge=0)  # kind random: layers per pass
    # stage 2 of a top-k student (learned router, min_layers >= 1): after the budget warm-up the
    # batches cycle through these depths k (every input its own top k), so the student also works at
    # the depths a latency deadline may cut it to (a top-2-only student is 2x worse at one layer);
    # [] = always min_layers. Inference still runs min_layers (the node's cap may lower it).
    train_depths: list[Int] = field(default_factory=list)
    # where a learned router starts stage 2: "open" (every gate at init_bias; the warm-up's gradients
    # pick the layers) or "greedy" (gates ranked by the static baseline's greedy search on the teacher:
    # every input starts on the best fixed route, and the router learns where to depart from it)
    init_route: str = "open"
    # how a learned router learns which layers matter: "gradient" (ActDistill: the straight-through
    # gate gradient of the distillation loss) or "measured" (each layer's measured effect on the
    # action error of the sample's current route, on credit_samples samples per batch;
    # training/layer_credit.py)
    credit: str = "gradient"
    credit_samples: Int = Field(16, ge=1)
    # with credit "measured": layers toggled per sampled row and step, drawn at random (0 = every
    # layer); bounds the measurement at credit_samples x (credit_layers + 1) passes for deep teachers
    credit_layers: Int = Field(0, ge=0)

    def validate(self) -> None:
        if self.credit not in ROUTER_CREDITS:
            raise ConfigError(f"router.credit: unknown signal {self.credit!r}; valid: {', '.join(ROUTER_CREDITS)}")
        if self.credit_layers and self.credit != "measured":
            raise ConfigError(f"router.credit_layers: {self.credit_layers} sets how many layers the measured "
                              f"credit toggles, but router.credit is {self.credit!r}; set credit: measured or "
                              "credit_layers: 0")
        if self.credit == "measured" and self.kind != "learned":
            raise ConfigError("router.credit: 'measured' trains a learned router; fixed and random routers learn "
                              "nothing")
        if self.init_route not in ROUTE_STARTS:
            raise ConfigError(f"router.init_route: unknown start {self.init_route!r}; valid: {', '.join(ROUTE_STARTS)}")
        if self.init_route == "greedy" and self.kind != "learned":
            raise ConfigError("router.init_route: 'greedy' ranks a learned router's gates; fixed and random "
                              "routers have none")
        if self.train_depths and (self.kind != "learned" or self.min_layers < 1):
            raise ConfigError("router.train_depths: needs the learned router with top-k routing (min_layers >= 1)")
        if any(depth < 1 for depth in self.train_depths):
            raise ConfigError(f"router.train_depths: every depth must be >= 1, got {self.train_depths}")
        if self.kind not in ROUTER_KINDS:
            raise ConfigError(f"router.kind: unknown router {self.kind!r}; valid: {', '.join(ROUTER_KINDS)}")
        if self.kind == "fixed" and not self.fixed_layers:
            raise ConfigError("router.fixed_layers: a fixed router needs at least one layer")
        if self.kind == "random" and self.random_layers <= 0:
            raise ConfigError(f"router.random_layers must be > 0 for a random router, got {self.random_layers}")

    def check_layers(self, num_layers: int) -> None:
        """The settings that depend on the backbone's depth."""
        bad = [i for i in self.fixed_layers if not 0 <= i < num_layers]
        if bad or len(set(self.fixed_layers)) != len(self.fixed_layers):
            raise ConfigError(f"router.fixed_layers {self.fixed_layers}: need distinct layer indices in "
                              f"[0, {num_layers - 1}]")
        if self.random_layers > num_layers:
            raise ConfigError(f"router.random_layers {self.random_layers} > the backbone's {num_layers} layers")
        if any(depth > num_layers for depth in self.train_depths):
            raise ConfigError(f"router.train_depths {self.train_depths}: more than the backbone's {num_layers} layers")


@config_dataclass
class LossConfig:
    """Stage-2 loss weights (defaults are METHOD.md's) and the compute budget.

    The budget (our addition to the method): ``keep_ratio`` is the target fraction of decoder
    layers executed. With ``budget_control`` every training batch is cut at the score quantile
    that meets it, the inference threshold follows those cuts (a running average with
    ``budget_momentum``, ``Router.track_offset``) and is calibrated exactly at the end of stage 2
    (``model/router.py``). The target starts at 1.0 (the student starts as the teacher) and falls
    linearly to ``keep_ratio`` over the first ``budget_warmup`` of the steps, so the backbone
    adapts as layers drop out. Without it only the ``budget`` loss term acts (as in the
    paper, whose router meets no budget)."""

    alpha: Float = Field(1.0, ge=0)  # semantic + relational
    beta: Float = Field(1.0, ge=0)  # layer-wise action terms
    eta: Float = Field(0.5, ge=0)  # relational weight inside the alpha term
    gamma: Float = Field(2.0, ge=0)  # layer weights (l / (L-1))^gamma
    balance: Float = Field(0.3, ge=0)
    budget: Float = Field(10.0, ge=0)  # our addition: (executed fraction - keep target)^2
    keep_ratio: Float = Field(0.45, gt=0, le=1)  # target fraction of decoder layers executed
    budget_control: bool = True  # every batch spends the keep target; the threshold follows (see above)
    # per step, the inference threshold moves this much of the way to the batch's cut
    budget_momentum: Float = Field(0.1, gt=0, le=1)
    budget_warmup: Float = Field(0.3, ge=0, lt=1)  # fraction of stage 2 over which the keep target falls from 1.0

    def keep_target(self, progress: float) -> float:
        """The keep target at ``progress`` (0..1) of stage 2: 1.0 -> keep_ratio over the warm-up."""
        if self.budget_warmup <= 0 or progress >= self.budget_warmup:
            return self.keep_ratio
        return 1.0 + (self.keep_ratio - 1.0) * progress / self.budget_warmup


@config_dataclass
class OptimConfig:
    epochs: Int = Field(10, gt=0)
    batch_size: Int = Field(32, gt=0)
    lr: Float = Field(1e-3, gt=0)
    weight_decay: Float = 0.0
    grad_clip: Float = 1.0
    checkpoint_every: Int = Field(50, gt=0)  # optimizer steps between resumable checkpoints
    seed: Int = 0
    schedule: str = "cosine"  # cosine (with 3% linear warm-up) | constant
    min_lr_fraction: Float = 0.05  # cosine floor, as a fraction of lr

    def validate(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"schedule must be cosine or constant, got {self.schedule!r}")


LORA_DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@config_dataclass
class MemoryConfig:
    """Options that let a large teacher/student train in less memory (all off by default)."""

    freeze_vision: bool = False  # the vision encoder gets no gradients and no optimizer state
    # >0: LoRA (peft) on the decoder layers' linear projections; their base weights freeze
    lora_rank: Int = Field(0, ge=0)
    lora_alpha: Float = Field(0.0, ge=0)  # LoRA scale numerator (0: 2 * lora_rank)
    lora_dropout: Float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_DEFAULT_TARGETS))  # leaf names ([]: all)
    autocast_bf16: bool = False  # bf16 autocast of forward passes: CUDA only (an error on CPU)
    gradient_checkpointing: bool = False  # decoder layers recompute their activations in backward
    release_teacher: bool = False  # distillation: after stage 1 the teacher's weights become the student
    # (no second copy); stage 2 reads the teacher only from its cached, sample-keyed outputs


DISTRIBUTED_STRATEGIES = ("none", "ddp", "fsdp")


@config_dataclass
class DistributedConfig:
    """Multi-process training (launch with torchrun; see docs/distributed.md)."""

    strategy: str = "none"  # none | ddp | fsdp (fsdp: decoder layers and the rest sharded, FSDP2)
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | gloo | nccl
    timeout_s: Float = Field(600.0, gt=0)  # a collective that waits longer fails instead of hanging

    def validate(self) -> None:
        if self.strategy not in DISTRIBUTED_STRATEGIES:
            raise ConfigError(f"distributed.strategy: unknown strategy {self.strategy!r}; "
                              f"valid: {', '.join(DISTRIBUTED_STRATEGIES)}")
        if self.backend not in ("auto", "gloo", "nccl"):
            raise ConfigError(f"distributed.backend must be auto, gloo or nccl, got {self.backend!r}")


@config_dataclass
class TeacherTrainConfig:
    model: TinyVLAConfig = field(default_factory=TinyVLAConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=30, lr=1e-3))
    held_out_fraction: Float = 0.15
    device: str = "auto"
    augment_shift_px: Int = Field(0, ge=0)  # random image shifts of up to this many pixels while training (0 = off)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


@config_dataclass
class DistillConfig:
    graph: GraphConfig = field(default_factory=GraphConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    probe: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=5, lr=1e-3))
    student: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=15, lr=3e-4))
    router_lr: Float = Field(3e-3, gt=0)  # the router learns from scratch; the backbone only adapts
    train_backbone: bool = True  # False: only the router adapts (cheapest, for huge teachers)
    max_train_episodes: Int = Field(0, ge=0)  # >0: distil on this many training episodes (stages 1-2 cost less)
    held_out_fraction: Float = 0.15
    device: str = "auto"
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def validate(self) -> None:
        if self.router.credit == "measured" and not self.loss.budget_control:
            raise ConfigError("router.credit: 'measured' needs loss.budget_control: true (the router then learns "
                              "no budget from the loss, only the batch cut meets it)")
        if self.router.credit == "measured" and self.distributed.strategy == "fsdp":
            raise ConfigError("router.credit: 'measured' runs the backbone outside the training forward, which "
                              "FSDP's sharded layers do not allow; use distributed.strategy ddp or none")
        if self.memory.lora_rank and not self.train_backbone:
            raise ConfigError("memory.lora_rank > 0 adapts the backbone: it needs train_backbone: true")
