"""The teacher stage for a transformers model directory: model + action head -> a teacher checkpoint.

A ``regression`` / ``tokens`` / ``flow`` head is new, so it is first fitted on the training
demonstrations by behaviour cloning with its own task loss, the VLM frozen (core's
``train_teacher``: resumable, marked done in ``runs/teacher_done.json``). The ``action_tokens``
head is the model's own (OpenVLA) and its statistics come from the checkpoint: nothing to fit.
The result is written to ``out_dir/teacher`` (referencing the source model, see :mod:`.export`),
which the distillation stages then load like any teacher checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..core.config import OptimConfig
from ..core.device import resolve_device
from ..core.model.checkpoint import save_teacher, weights_sha256
from ..core.training.runs import dataset_provenance, dataset_sha256, split_dataset
from ..core.training.stages import (
    clear_stages,
    evaluate,
    mark_done,
    mark_started,
    stage_done,
    stage_identity,
    train_teacher,
)
from ..core.typed_config import to_dict
from .loading import load_hf_teacher
from .options import HFTeacherOptions

log = logging.getLogger(__name__)


def prepare_hf_teacher(
    dataset_dir: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    options: HFTeacherOptions,
    batch_size: int = 32,
    held_out_fraction: float = 0.15,
    device: str = "auto",
    seed: int = 0,
    stop_after: int | None = None,
    restart: bool = False,
) -> tuple[Path, bool]:
    """-> (``out_dir/teacher``, finished). Skipped when ``runs/teacher_done.json`` records the same
    options, data and model weights (sha256); other ones are a StaleRunError (``restart`` starts over)."""
    out_dir = Path(out_dir)
    run_dir = out_dir / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    teacher_dir = out_dir / "teacher"
    if restart:
        clear_stages(run_dir, ["teacher"])
    identity = stage_identity({**to_dict(options), "batch_size": batch_size, "held_out_fraction": held_out_fraction,
                               "seed": seed}, dataset=dataset_sha256(dataset_dir),
                              model_sha256=weights_sha256(model_dir))
    if stage_done(run_dir, "teacher", identity) and (teacher_dir / "config.json").is_file():
        log.info("transformers teacher already prepared: %s", teacher_dir)
        return teacher_dir, True
    mark_started(run_dir, "teacher", identity)
    torch.manual_seed(seed)
    teacher = load_hf_teacher(model_dir, options)
    train, held_out = split_dataset(dataset_dir, held_out_fraction, teacher)
    teacher.to(resolve_device(device))
    info: dict = {"model_dir": str(Path(model_dir).resolve()), "head": options.head}
    if getattr(teacher.action_head, "needs_fitting", False):
        teacher.model.requires_grad_(False)  # the VLM stays as it is; only the new head learns
        optim = OptimConfig(epochs=options.head_epochs, batch_size=batch_size, lr=options.head_lr, seed=seed)
        result = train_teacher(teacher, train, optim, run_dir, stop_after=stop_after)
        if not result.finished:
            return teacher_dir, False
        teacher = result.model or teacher
        info["head_fitting"] = {
            "steps": result.steps,
            "final": result.history[-1] if result.history else {},
            "optim": to_dict(optim),
        }
    info["held_out"] = evaluate(teacher, held_out, routed=False)
    save_teacher(teacher.cpu(), teacher_dir, extra={"training": {**info, "dataset": dataset_provenance(dataset_dir)}})
    mark_done(run_dir, "teacher", {"steps": info.get("head_fitting", {}).get("steps", 0), "held_out": info["held_out"]},
              identity)
    return teacher_dir, True
