"""Training stages: behaviour cloning of the teacher, stage 1 (probing), stage 2 (distillation).

Every stage is resumable (see ``loop.py``) and marks completion with a ``<stage>_done.json``
so a rerun of a pipeline skips finished stages instead of redoing them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import DistillConfig, OptimConfig
from .dataset import DatasetError, EpisodeDataset
from .graph import LayerProbes
from .loop import LoopResult, run_loop
from .losses import distillation_loss
from .student import RoutedStudent
from .teacher import VLATeacher


@dataclass
class TensorData:
    """Model-ready samples: prepared inputs, chunked targets and stable sample ids."""

    inputs: dict[str, torch.Tensor]
    targets: torch.Tensor  # [N, H, 7] physical units
    sample_ids: torch.Tensor  # int64 [N]: episode * 100000 + step (stable across shuffles)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def rows(self, rows: torch.Tensor, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {k: v[rows].to(device) for k, v in self.inputs.items()}, self.targets[rows].to(device)


def chunk_targets(actions: np.ndarray, chunk: int) -> np.ndarray:
    """[T, 7] -> [T, chunk, 7]: the next ``chunk`` actions; past the episode end, zero
    motion with the last gripper value (the arm holds still)."""
    steps = len(actions)
    hold = np.zeros(7, np.float32)
    hold[6] = actions[-1, 6]
    padded = np.concatenate([actions, np.repeat(hold[None], chunk - 1, 0)]) if chunk > 1 else actions
    return np.stack([padded[t:t + chunk] for t in range(steps)]).astype(np.float32)


def build_tensor_data(dataset: EpisodeDataset, teacher: VLATeacher, id_offset: int = 0) -> TensorData:
    pixels, input_ids, targets, ids = [], [], [], []
    for e, episode in enumerate(dataset.episodes):
        prepared = teacher.prepare(episode.images, [episode.instruction] * len(episode))
        pixels.append(prepared["pixels"])
        input_ids.append(prepared["input_ids"])
        targets.append(torch.from_numpy(chunk_targets(episode.actions, teacher.chunk_size)))
        ids.append(torch.arange(len(episode), dtype=torch.int64) + (e + id_offset) * 100_000)
    return TensorData({"pixels": torch.cat(pixels), "input_ids": torch.cat(input_ids)},
                      torch.cat(targets), torch.cat(ids))


def _done_path(run_dir: Path, stage: str) -> Path:
    return run_dir / f"{stage}_done.json"


def stage_done(run_dir: Path, stage: str) -> dict | None:
    path = _done_path(run_dir, stage)
    return json.loads(path.read_text()) if path.exists() else None


def mark_done(run_dir: Path, stage: str, info: dict) -> None:
    _done_path(run_dir, stage).write_text(json.dumps(info, indent=2))


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def train_teacher(teacher: VLATeacher, data: TensorData, cfg: OptimConfig, run_dir: Path,
                  stop_after: int | None = None) -> LoopResult:
    """Behaviour cloning: MSE of the normalised action chunk (the action head's task loss)."""
    if len(data) == 0:
        raise DatasetError("no training samples")
    teacher.normalizer.fit(data.targets)
    device = _device_of(teacher)
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(rows: torch.Tensor):
        inputs, target = data.rows(rows, device)
        loss = teacher.task_loss(teacher(inputs), teacher.normalizer.normalize(target))
        return loss, {"task": loss.item()}

    return run_loop("teacher", run_dir, {"teacher": teacher}, optimizer, cfg, len(data), step, stop_after)


def train_probes(teacher: VLATeacher, probes: LayerProbes, data: TensorData, cfg: OptimConfig, run_dir: Path,
                 stop_after: int | None = None) -> LoopResult:
    """Stage 1: frozen teacher; graph modules + per-layer heads learn to predict the action
    from every layer (mean over layers of the MSE to ground truth)."""
    teacher.eval().requires_grad_(False)
    device = _device_of(teacher)
    optimizer = torch.optim.AdamW(probes.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(rows: torch.Tensor):
        inputs, target = data.rows(rows, device)
        with torch.no_grad():
            _, per_layer, batch = teacher(inputs, return_hidden=True)
        _, layer_actions = probes(per_layer, batch.attention_mask)
        per_layer_mse = ((layer_actions - teacher.normalizer.normalize(target)[:, None]) ** 2).mean((0, 2, 3))
        loss = per_layer_mse.mean()
        return loss, {"probe": loss.item(), "first_layer": per_layer_mse[0].item(),
                      "last_layer": per_layer_mse[-1].item()}

    return run_loop("probe", run_dir, {"probes": probes}, optimizer, cfg, len(data), step, stop_after)


class TeacherRecords:
    """Teacher per-layer semantics and actions, keyed by sample id (not by batch order)."""

    def __init__(self, sample_ids: torch.Tensor, semantics: torch.Tensor, actions: torch.Tensor) -> None:
        self.sample_ids, self.semantics, self.actions = sample_ids, semantics, actions
        self._row = {int(s): i for i, s in enumerate(sample_ids.tolist())}

    def lookup(self, sample_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            rows = torch.tensor([self._row[int(s)] for s in sample_ids.tolist()])
        except KeyError as exc:
            raise KeyError(f"no teacher record for sample id {exc.args[0]}: re-run stage 1") from exc
        return self.semantics[rows], self.actions[rows]

    def save(self, path: Path) -> None:
        save_file({"sample_ids": self.sample_ids, "semantics": self.semantics.contiguous(),
                   "actions": self.actions.contiguous()}, str(path))

    @classmethod
    def load(cls, path: Path) -> TeacherRecords:
        t = load_file(str(path))
        return cls(t["sample_ids"], t["semantics"], t["actions"])


@torch.no_grad()
def record_teacher(teacher: VLATeacher, probes: LayerProbes, data: TensorData, batch_size: int = 64) -> TeacherRecords:
    device = _device_of(teacher)
    teacher.eval()
    probes.eval()
    sems, acts = [], []
    for start in range(0, len(data), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(data)))
        inputs, _ = data.rows(rows, device)
        _, per_layer, batch = teacher(inputs, return_hidden=True)
        sem, act = probes(per_layer, batch.attention_mask)
        sems.append(sem.float().cpu())
        acts.append(act.float().cpu())
    return TeacherRecords(data.sample_ids.clone(), torch.cat(sems), torch.cat(acts))


def distill_student(student: RoutedStudent, probes: LayerProbes, records: TeacherRecords, data: TensorData,
                    cfg: DistillConfig, run_dir: Path, stop_after: int | None = None) -> LoopResult:
    """Stage 2: train router (+ backbone) with the full ActDistill objective. The probes
    are frozen: they define the semantic space the teacher records live in."""
    probes.eval().requires_grad_(False)
    device = _device_of(student)
    # the student was copied from a teacher that stage 1 froze: set trainability explicitly,
    # or a fresh run would silently train only the router while a resumed one trains both
    student.backbone.requires_grad_(cfg.train_backbone)
    student.router.requires_grad_(True)
    groups = [{"params": list(student.router.parameters()), "lr": cfg.router_lr}]
    if cfg.train_backbone:
        groups.append({"params": list(student.backbone.parameters()), "lr": cfg.student.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.student.weight_decay)
    normalizer = student.backbone.normalizer

    def step(rows: torch.Tensor):
        inputs, target = data.rows(rows, device)
        target_n = normalizer.normalize(target)
        teacher_sem, teacher_act = (t.to(device) for t in records.lookup(data.sample_ids[rows]))
        out = student.forward_train(inputs)
        student_sem, student_act = probes(out.per_layer_hidden, out.batch.attention_mask)
        task = student.backbone.task_loss(out.actions, target_n)
        loss, terms = distillation_loss(cfg.loss, task, student_sem, teacher_sem, student_act, teacher_act,
                                        target_n, out.gate_probs, out.gates)
        return loss, terms

    return run_loop("student", run_dir, {"student": student}, optimizer, cfg.student, len(data), step, stop_after)


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData, routed: bool, batch_size: int = 64) -> dict:
    """Held-out action MSE in normalised units (every dimension weighs the same) and, for a
    routed student, executed layers per sample, plus per-layer activation frequency."""
    device = _device_of(model)
    model.eval()
    errors, executed = [], []
    for start in range(0, len(data), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(data)))
        inputs, target = data.rows(rows, device)
        if routed:
            out = model.forward_routed(inputs)
            predicted, normalizer = out.actions, model.backbone.normalizer
            executed.append(out.executed.float().cpu())
        else:
            predicted, normalizer = model(inputs), model.normalizer
        errors.append(((predicted.float() - normalizer.normalize(target)) ** 2).mean((1, 2)).cpu())
    result = {"action_mse": torch.cat(errors).mean().item(), "samples": len(data)}
    if routed:
        ex = torch.cat(executed)
        result["executed_layer_fraction"] = ex.mean().item()
        result["layer_frequency"] = ex.mean(0).tolist()
    return result


@torch.no_grad()
def agreement(student: RoutedStudent, teacher: VLATeacher, data: TensorData, batch_size: int = 64) -> float:
    """MSE (normalised units) between student and teacher actions."""
    device = _device_of(student)
    errors = []
    for start in range(0, len(data), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(data)))
        inputs, _ = data.rows(rows, device)
        errors.append(((student.forward_routed(inputs).actions - teacher(inputs)) ** 2).mean((1, 2)).cpu())
    return torch.cat(errors).mean().item()
