"""Multi-process training on torch.distributed: DDP or FSDP2, launched with ``torchrun``.

Each rank takes its contiguous shard of every global batch (the batch order is the same
pure function of (seed, epoch) as in one process, see ``loop.py``); the global batch size is
``optim.batch_size`` and must be divisible by the number of processes. Per-sample loss terms
are means over the local shard and DDP/FSDP average the gradients, which gives the global
mean. ActDistill also has batch-level terms (the relational B x B cosine matrices, the gate
balance and budget): those are computed on tensors all-gathered with autograd from every
rank, so they see the whole global batch. The result: the same update as one process with
the same global batch (up to float summation order) -- test/test_distributed.py checks it.

Launch (the entry point is :mod:`actdistill_ros.core.distributed`; see docs/distributed.md):

    torchrun --nproc-per-node 4 -m actdistill_ros.core.distributed distill \\
        --dataset runs/default/data --teacher runs/default/teacher --out runs/ddp --strategy ddp

Only rank 0 writes files (metrics, resume state, records, checkpoints); all ranks read the
resume state, so ``--out`` must be on a file system every rank sees. A collective that waits
longer than ``distributed.timeout_s`` raises instead of hanging.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..config import DistributedConfig
from ..typed_config import ConfigError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class _MethodCaller(nn.Module):
    """``forward`` = ``module.<method>``: lets DDP drive a method other than ``forward``."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args, **kwargs):
        return getattr(self.module, self.method)(*args, **kwargs)


@dataclass
class World:
    """This process's place in the job; ``World()`` is a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    strategy: str = "none"  # none | ddp | fsdp
    group: Any = None  # side process group for loss-term gathers (apart from DDP's gradient traffic)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- batches -------------------------------------------------------------------------

    def min_batch(self) -> int:
        """Smallest global batch: 2 (one sample has no relational structure), and one per rank."""
        return max(2, self.size)

    def check_batch_size(self, batch_size: int, what: str) -> None:
        if self.distributed and batch_size % self.size:
            raise ConfigError(
                f"{what}: the global batch_size {batch_size} must be divisible by the {self.size} processes"
            )

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of the global batch ``rows`` (trimmed to equal shards)."""
        if not self.distributed:
            return rows
        usable = len(rows) - len(rows) % self.size
        return rows[:usable].tensor_split(self.size)[self.rank]

    # -- collectives -----------------------------------------------------------------------

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``x`` along dim 0 (rank order); differentiable: gradients
        flow back to the rank that owns each row."""
        if not self.distributed:
            return x
        if x.requires_grad:
            return _GatherRows.apply(x, self)
        return _all_gather(x, self)

    def mean(self, values: list[float], device: torch.device) -> list[float]:
        """Mean over ranks of a list of numbers (one small all-reduce)."""
        if not self.distributed or not values:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, group=self.group)
        return (t / self.size).tolist()

    def gather_objects(self, obj: Any) -> list:
        if not self.distributed:
            return [obj]
        out: list = [None] * self.size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.group)

    # -- wrapping --------------------------------------------------------------------------

    def wrap_method(
        self, module: nn.Module, method: str, shard_units: list[nn.Module] | None = None, strategy: str | None = None
    ):
        """A callable running ``module.<method>`` with gradient synchronisation.

        ``ddp``: DistributedDataParallel around the module (gradients all-reduced in backward).
        ``fsdp``: FSDP2 ``fully_shard`` on each of ``shard_units`` (the decoder layers) and on
        ``module`` (the rest), in place; the optimizer must be built after this call. Frozen
        modules (no trainable parameter) are not wrapped.
        """
        strategy = strategy or self.strategy
        fn = getattr(module, method)
        if not self.distributed or not any(p.requires_grad for p in module.parameters()):
            return fn
        if strategy == "ddp":
            device = next(module.parameters()).device
            return nn.parallel.DistributedDataParallel(
                _MethodCaller(module, method), device_ids=[device.index] if device.type == "cuda" else None
            )
        if strategy == "fsdp":
            from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

            module._actdistill_shell = [meta_shell(module)]  # a list: not registered as a submodule
            for unit in shard_units or []:
                fully_shard(unit)
            fully_shard(module)
            register_fsdp_forward_method(module, method)
            return getattr(module, method)
        raise ConfigError(f"unknown distributed strategy {strategy!r}")

    def is_sharded(self, module: nn.Module) -> bool:
        return hasattr(module, "_actdistill_shell")

    # -- state (resume files and the trained model) --------------------------------------

    def module_state(self, module: nn.Module) -> dict:
        """Full state dict (a collective under FSDP; complete on rank 0)."""
        if self.is_sharded(module):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return module.state_dict()

    def optimizer_state(self, module: nn.Module | None, optimizer: torch.optim.Optimizer) -> dict:
        if module is not None and self.is_sharded(module):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            return get_optimizer_state_dict(
                module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        return optimizer.state_dict()

    def load_module_state(self, module: nn.Module, state: dict) -> None:
        if self.is_sharded(module):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True))
        else:
            module.load_state_dict(state)

    def load_optimizer_state(self, module: nn.Module | None, optimizer: torch.optim.Optimizer, state: dict) -> None:
        if module is not None and self.is_sharded(module):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))
        else:
            optimizer.load_state_dict(state)

    def unwrap(self, module: nn.Module) -> nn.Module | None:
        """The trained model as a plain module: ``module`` itself unless FSDP sharded it; then a
        copy with the gathered full weights on CPU on rank 0 (None on other ranks; collective)."""
        if not self.is_sharded(module):
            return module
        state = self.module_state(module)
        if not self.is_main:
            return None
        shell = module._actdistill_shell[0]
        _materialize(shell)
        shell.load_state_dict(state, strict=True)
        return shell


def _all_gather(x: torch.Tensor, world: World) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x.contiguous(), group=world.group)
    return torch.cat(parts, 0)


class _GatherRows(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums every rank's gradient for this rank's rows
    (an all-reduce then a slice: works on every backend, gloo included)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, world: World) -> torch.Tensor:
        ctx.world, ctx.rows = world, x.shape[0]
        return _all_gather(x, world)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        world = ctx.world
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=world.group)
        return grad[world.rank * ctx.rows : (world.rank + 1) * ctx.rows], None


def meta_shell(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters live on the meta device (no memory); buffers are copied."""
    memo = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in module.parameters()
    }
    return copy.deepcopy(module, memo)


def _materialize(shell: nn.Module) -> None:
    for sub in shell.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None and p.is_meta:
                sub._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype), requires_grad=p.requires_grad)


SINGLE = World()


def init_world(cfg: DistributedConfig) -> World:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, MASTER_ADDR, ... in the
    environment); ``strategy: none`` is a single process (and an error under torchrun)."""
    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.strategy == "none":
        if world_env > 1:
            raise ConfigError(
                f"started as one of {world_env} processes (torchrun) but distributed.strategy is "
                "none: set distributed.strategy to ddp or fsdp"
            )
        return SINGLE
    missing = [k for k in ENV_KEYS if k not in os.environ]
    if missing and not dist.is_initialized():
        raise ConfigError(
            f"distributed.strategy {cfg.strategy}: {', '.join(missing)} not set; "
            "launch with torchrun (docs/distributed.md)"
        )
    backend = cfg.backend
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    timeout = timedelta(seconds=cfg.timeout_s)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timeout)
    group = dist.new_group(backend=backend, timeout=timeout)
    return World(
        rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank, strategy=cfg.strategy, group=group
    )


def device_for(world: World, device: torch.device) -> torch.device:
    """One GPU per process: ``cuda`` becomes ``cuda:<LOCAL_RANK>``."""
    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
