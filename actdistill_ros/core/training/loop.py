"""A resumable training loop shared by teacher training, stage 1 and stage 2.

Batch order is a pure function of (seed, epoch), so a run killed after checkpoint k and
restarted replays exactly the batches it would have seen: it loses at most the steps
since the last checkpoint, and finishes with the same total step count. Resume state is
written with ``torch.save`` and read back with ``weights_only=True`` (no arbitrary
unpickling), atomically (write then rename) so a kill mid-write leaves the old one. It holds
the CPU random state and, when training on CUDA, that device's too (dropout and noise drawn
on the GPU continue as they would have).

Several processes (``world``, see ``parallel.py``): every rank walks the same global
batches and runs ``step_fn`` on its shard; the logged terms are means over ranks; only rank
0 writes metrics and resume state. Out-of-memory errors are re-raised with advice.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..atomic_files import write_atomically
from ..config import OptimConfig
from ..progress import progress_bar
from .memory import TrainingOutOfMemoryError, is_out_of_memory, out_of_memory_advice
from .parallel import SINGLE, World


@dataclass
class LoopResult:
    steps: int
    total: int
    resumed_from: int
    history: list[dict]
    model: nn.Module | None = None  # the trained model (set by the training stages; see distributed.World.unwrap)

    @property
    def finished(self) -> bool:
        return self.steps >= self.total


def epoch_order(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_samples, generator=generator)


def lr_factor(cfg: OptimConfig, step: int, total: int) -> float:
    """Learning-rate multiplier at ``step``: a pure function of the step, so resuming needs no
    scheduler state."""
    if cfg.schedule == "constant":
        return 1.0
    warmup = max(1, int(0.03 * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def batches_per_epoch(num_samples: int, batch_size: int, min_batch: int = 2) -> int:
    """Full batches plus a last partial one of at least ``min_batch`` samples (a batch of 1 has
    no relational structure; several processes need one sample each)."""
    full, rest = divmod(num_samples, batch_size)
    return full + (1 if rest >= min_batch else 0)


def run_loop(
    name: str,
    run_dir: Path,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    cfg: OptimConfig,
    num_samples: int,
    step_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
    stop_after: int | None = None,
    world: World = SINGLE,
    oom_advice: str | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> LoopResult:
    """Run ``cfg.epochs`` epochs of ``step_fn(sample_indices) -> (loss, terms)``.

    ``stop_after`` (tests) returns early after that many global steps, like a kill. With
    several processes ``step_fn`` gets this rank's shard of each global batch. ``oom_advice``
    is appended to the message of an out-of-memory error. ``on_step(step, total)`` runs before
    each step (schedules that depend on training progress, e.g. stage 2's keep target).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / f"{name}_state.pt"
    metrics_path = run_dir / f"{name}_metrics.jsonl"
    world.check_batch_size(cfg.batch_size, name)
    per_epoch = batches_per_epoch(num_samples, cfg.batch_size, world.min_batch())
    if per_epoch == 0:
        raise ValueError(f"{name}: {num_samples} samples is too few for batches of {cfg.batch_size}")
    total = cfg.epochs * per_epoch
    # under FSDP the optimizer state is saved through the one (sharded) module it optimises
    owner = next(iter(modules.values())) if len(modules) == 1 else None
    start = 0
    base_lrs = [group.setdefault("base_lr", group["lr"]) for group in optimizer.param_groups]
    world.barrier()  # nobody reads a resume state that another rank is still writing
    if state_path.exists():
        state = torch.load(state_path, weights_only=True, map_location="cpu")
        for key, module in modules.items():
            world.load_module_state(module, state["modules"][key])
        world.load_optimizer_state(owner, optimizer, state["optimizer"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and _cuda_device(modules) is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], _cuda_device(modules))
        start = int(state["step"])
    history = _read_history(metrics_path, keep_until=start) if world.is_main else []
    params = [p for group in optimizer.param_groups for p in group["params"]]
    base_lrs = [group["base_lr"] for group in optimizer.param_groups]
    for module in modules.values():
        module.train()
    bar = progress_bar(total, name, unit="step", initial=start, enabled=world.is_main)
    step = start
    device = params[0].device if params else torch.device("cpu")
    with (metrics_path.open("a") if world.is_main else open(os.devnull, "w")) as metrics:
        while step < total:
            epoch, index = divmod(step, per_epoch)
            order = epoch_order(num_samples, cfg.seed, epoch)
            rows = world.shard(order[index * cfg.batch_size:(index + 1) * cfg.batch_size])
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * lr_factor(cfg, step, total)
            if on_step is not None:
                on_step(step, total)
            try:
                loss, terms = step_fn(rows)
                # one all-reduce: every rank sees the same loss (a non-finite one stops all ranks)
                mean_loss, *values = world.mean([loss.item(), *terms.values()], device)
                terms = dict(zip(terms, values, strict=True))
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"{name}: loss became non-finite at step {step}: {terms}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc) or isinstance(exc, TrainingOutOfMemoryError):
                    raise
                optimizer.zero_grad(set_to_none=True)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                batch = f"global batch {cfg.batch_size}" + (f" ({len(rows)} per process)" if world.distributed else "")
                raise TrainingOutOfMemoryError(
                    f"{name}: out of memory at step {step} ({batch}, {device}); "
                    f"{oom_advice or out_of_memory_advice(None, cfg.batch_size, world.distributed)}") from exc
            step += 1
            record = {"step": step, "epoch": epoch, **terms}
            history.append(record)
            metrics.write(json.dumps(record) + "\n")
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(terms.items())[:4]}, refresh=False)  # redraws: mininterval
            if step % cfg.checkpoint_every == 0 or step == total:
                metrics.flush()
                _save_state(state_path, modules, optimizer, step, world, owner)
            if stop_after is not None and step >= stop_after:
                break
    bar.close()
    world.barrier()  # the final state is on disk before any rank goes on
    for module in modules.values():
        module.eval()
    return LoopResult(steps=step, total=total, resumed_from=start, history=history)


def _save_state(path: Path, modules: dict[str, nn.Module], optimizer, step: int, world: World = SINGLE,
                owner: nn.Module | None = None) -> None:
    # gathering is collective under FSDP: every rank takes part, rank 0 writes
    state = {"modules": {k: world.module_state(m) for k, m in modules.items()},
             "optimizer": world.optimizer_state(owner, optimizer), "rng": torch.get_rng_state(), "step": step}
    if (cuda := _cuda_device(modules)) is not None:
        state["cuda_rng"] = torch.cuda.get_rng_state(cuda)
    if not world.is_main:
        return
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def _cuda_device(modules: dict[str, nn.Module]) -> torch.device | None:
    """The CUDA device the modules train on (None on CPU): whose random state is saved."""
    for module in modules.values():
        for param in module.parameters():
            return param.device if param.device.type == "cuda" else None
    return None


def _read_history(path: Path, keep_until: int) -> list[dict]:
    """Metrics logged before the restored step; later lines (lost work) are dropped."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if record.get("step", 0) <= keep_until:
            kept.append(record)
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept
