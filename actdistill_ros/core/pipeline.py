"""End-to-end stages over a dataset directory, each resumable and skipped once done:

teacher: dataset -> behaviour-cloned TinyVLA checkpoint
distill: dataset + teacher -> stage 1 (probes, teacher records) -> stage 2 -> exported student
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_teacher, save_student, save_teacher, weights_sha256
from .config import DistillConfig, TeacherTrainConfig, to_dict
from .dataset import EpisodeDataset
from .device import resolve_device
from .graph import LayerProbes
from .student import RoutedStudent
from .tiny_vla import TinyVLA
from .training import (
    TeacherRecords,
    TensorData,
    agreement,
    build_tensor_data,
    distill_student,
    evaluate,
    mark_done,
    record_teacher,
    stage_done,
    train_probes,
    train_teacher,
)

log = logging.getLogger(__name__)
Progress = Callable[[str, dict], None]


def _split(dataset_dir: str | Path, held_out_fraction: float, teacher,
           max_train_episodes: int = 0) -> tuple[TensorData, TensorData]:
    """The same episode split for every stage; optionally only the first training episodes."""
    dataset = EpisodeDataset.load(dataset_dir)
    train, held_out = dataset.split(held_out_fraction, seed=0)
    n_train = len(train.episodes)
    if max_train_episodes:
        train = EpisodeDataset(train.episodes[:max_train_episodes], train.meta)
    return build_tensor_data(train, teacher), build_tensor_data(held_out, teacher, id_offset=n_train)


def _dataset_provenance(dataset_dir: str | Path) -> dict:
    """What a checkpoint records about its data: no absolute paths (they are machine-specific)."""
    meta = json.loads((Path(dataset_dir) / "dataset.json").read_text())  # the index only, not the episodes
    return {"name": Path(dataset_dir).name, "episodes": meta.get("num_episodes"), "steps": meta.get("num_steps"),
            "source": meta.get("source", "")}


def run_teacher_training(dataset_dir: str | Path, out_dir: str | Path, cfg: TeacherTrainConfig,
                         stop_after: int | None = None) -> Path:
    """-> the teacher checkpoint directory ``out_dir/teacher``."""
    out_dir = Path(out_dir)
    run_dir = out_dir / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    teacher_dir = out_dir / "teacher"
    if stage_done(run_dir, "teacher"):
        log.info("teacher already trained: %s", teacher_dir)
        return teacher_dir
    torch.manual_seed(cfg.optim.seed)
    device = resolve_device(cfg.device)
    teacher = TinyVLA(cfg.model)
    train, held_out = _split(dataset_dir, cfg.held_out_fraction, teacher)
    teacher.to(device)
    result = train_teacher(teacher, train, cfg.optim, run_dir, stop_after=stop_after)
    if not result.finished:
        return teacher_dir
    metrics = evaluate(teacher, held_out, routed=False)
    save_teacher(teacher.cpu(), teacher_dir, extra={"training": {
        "config": to_dict(cfg), "held_out": metrics, "dataset": _dataset_provenance(dataset_dir)}})
    mark_done(run_dir, "teacher", {"steps": result.steps, "held_out": metrics})
    return teacher_dir


@dataclass
class DistillResult:
    student_dir: Path
    metrics: dict


def run_distillation(dataset_dir: str | Path, teacher_dir: str | Path, out_dir: str | Path, cfg: DistillConfig,
                     progress: Progress | None = None, stop_after: dict | None = None) -> DistillResult:
    """Stage 1 + stage 2 + export. ``stop_after={'probe'|'student': n}`` simulates a kill (tests)."""
    stop_after = stop_after or {}
    notify = progress or (lambda stage, info: None)
    out_dir = Path(out_dir)
    run_dir = out_dir / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    student_dir = out_dir / "student"
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.student.seed)
    teacher = load_teacher(teacher_dir).to(device)
    train, held_out = _split(dataset_dir, cfg.held_out_fraction, teacher, cfg.max_train_episodes)
    notify("data", {"train_samples": len(train), "held_out_samples": len(held_out)})

    probes = LayerProbes(teacher.num_layers, teacher.hidden_size, teacher.chunk_size, cfg.graph).to(device)
    records_path = run_dir / "teacher_records.safetensors"
    if stage_done(run_dir, "probe") and records_path.exists():
        state = torch.load(run_dir / "probe_state.pt", weights_only=True, map_location=device)
        probes.load_state_dict(state["modules"]["probes"])
        records = TeacherRecords.load(records_path)
        notify("probe", {"skipped": True})
    else:
        notify("probe", {"started": True})
        result = train_probes(teacher, probes, train, cfg.probe, run_dir, stop_after=stop_after.get("probe"))
        if not result.finished:
            return DistillResult(student_dir, {"stopped": "probe", "steps": result.steps})
        records = record_teacher(teacher, probes, train)
        records.save(records_path)
        mark_done(run_dir, "probe", {"steps": result.steps, "final": result.history[-1] if result.history else {}})
    notify("probe", {"done": True})

    student = RoutedStudent.from_teacher(teacher, cfg.router).to(device)
    if not stage_done(run_dir, "student"):
        notify("student", {"started": True})
        result = distill_student(student, probes, records, train, cfg, run_dir, stop_after=stop_after.get("student"))
        if not result.finished:
            return DistillResult(student_dir, {"stopped": "student", "steps": result.steps})
        mark_done(run_dir, "student", {"steps": result.steps, "final": result.history[-1] if result.history else {}})
    else:
        state = torch.load(run_dir / "student_state.pt", weights_only=True, map_location=device)
        student.load_state_dict(state["modules"]["student"])
        notify("student", {"skipped": True})

    teacher_eval = evaluate(teacher, held_out, routed=False)
    student_eval = evaluate(student, held_out, routed=True)
    metrics = {
        "teacher_action_mse": teacher_eval["action_mse"],
        "student_action_mse": student_eval["action_mse"],
        "student_vs_teacher_mse": agreement(student, teacher, held_out),
        "action_error_ratio": student_eval["action_mse"] / max(teacher_eval["action_mse"], 1e-12),
        "executed_layer_fraction": student_eval["executed_layer_fraction"],
        "layer_frequency": student_eval["layer_frequency"],
        "held_out_samples": len(held_out),
        "train_samples": len(train),
    }
    save_student(student.cpu(), student_dir, extra={"distillation": {
        "teacher_sha256": weights_sha256(teacher_dir), "dataset": _dataset_provenance(dataset_dir),
        "config": to_dict(cfg), "held_out": metrics}})
    (out_dir / "distill_metrics.json").write_text(json.dumps(metrics, indent=2))
    notify("export", {"student": str(student_dir), **metrics})
    return DistillResult(student_dir, metrics)
