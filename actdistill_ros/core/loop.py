"""A resumable training loop shared by teacher training, stage 1 and stage 2.

Batch order is a pure function of (seed, epoch), so a run killed after checkpoint k and
restarted replays exactly the batches it would have seen: it loses at most the steps
since the last checkpoint, and finishes with the same total step count. Resume state is
written with ``torch.save`` and read back with ``weights_only=True`` (no arbitrary
unpickling), atomically (write then rename) so a kill mid-write leaves the old one.
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
from tqdm import tqdm

from .config import OptimConfig


@dataclass
class LoopResult:
    steps: int
    total: int
    resumed_from: int
    history: list[dict]

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


def batches_per_epoch(num_samples: int, batch_size: int) -> int:
    full, rest = divmod(num_samples, batch_size)
    return full + (1 if rest >= 2 else 0)  # a batch of 1 has no relational structure


def run_loop(
    name: str,
    run_dir: Path,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    cfg: OptimConfig,
    num_samples: int,
    step_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
    stop_after: int | None = None,
) -> LoopResult:
    """Run ``cfg.epochs`` epochs of ``step_fn(sample_indices) -> (loss, terms)``.

    ``stop_after`` (tests) returns early after that many global steps, like a kill.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / f"{name}_state.pt"
    metrics_path = run_dir / f"{name}_metrics.jsonl"
    per_epoch = batches_per_epoch(num_samples, cfg.batch_size)
    if per_epoch == 0:
        raise ValueError(f"{name}: {num_samples} samples is too few for batches of {cfg.batch_size}")
    total = cfg.epochs * per_epoch
    start = 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=True, map_location="cpu")
        for key, module in modules.items():
            module.load_state_dict(state["modules"][key])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
    history = _read_history(metrics_path, keep_until=start)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    base_lrs = [group.setdefault("base_lr", group["lr"]) for group in optimizer.param_groups]
    for module in modules.values():
        module.train()
    bar = tqdm(total=total, initial=start, desc=name, dynamic_ncols=True, disable=None)
    step = start
    with metrics_path.open("a") as metrics:
        while step < total:
            epoch, index = divmod(step, per_epoch)
            order = epoch_order(num_samples, cfg.seed, epoch)
            rows = order[index * cfg.batch_size:(index + 1) * cfg.batch_size]
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * lr_factor(cfg, step, total)
            loss, terms = step_fn(rows)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"{name}: loss became non-finite at step {step}: {terms}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            step += 1
            record = {"step": step, "epoch": epoch, **terms}
            history.append(record)
            metrics.write(json.dumps(record) + "\n")
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(terms.items())[:4]})
            if step % cfg.checkpoint_every == 0 or step == total:
                metrics.flush()
                _save_state(state_path, modules, optimizer, step)
            if stop_after is not None and step >= stop_after:
                break
    bar.close()
    for module in modules.values():
        module.eval()
    return LoopResult(steps=step, total=total, resumed_from=start, history=history)


def _save_state(path: Path, modules: dict[str, nn.Module], optimizer, step: int) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"modules": {k: m.state_dict() for k, m in modules.items()}, "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(), "step": step}, tmp)
    os.replace(tmp, path)


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
