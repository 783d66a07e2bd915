"""Training stages: behaviour cloning of the teacher, stage 1 (probing), stage 2 (distillation).

Every stage is resumable (see ``loop.py``) and marks completion with a ``<stage>_done.json``
so a rerun of a pipeline skips finished stages instead of redoing them.

Every stage takes the memory options (``MemoryConfig``: frozen vision, LoRA, bf16 autocast,
activation checkpointing; ``memory.py``) and a ``World`` (several processes, ``parallel.py``).
The task loss is always the action head's own (``VLATeacher.head_loss``: MSE, token
cross-entropy or flow matching). Stage 1's per-layer probes regress the action chunk whatever
the head (the paper's layer-wise action terms are MSEs on a_l; a regression probe is also the
cheapest readout of "how far the action has formed" at layer l).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic_files import write_atomically, write_json_atomic
from ..config import DistillConfig, MemoryConfig, OptimConfig
from ..data.dataset import DatasetError, EpisodeDataset
from ..model.graph import LayerProbes
from ..model.router import Router
from ..model.student import RoutedStudent
from ..model.teacher import VLATeacher
from ..typed_config import ConfigError
from .augment import batch_generator, random_shift
from .layer_credit import credit_loss, measure_layer_values, sample_credit_layers
from .loop import LoopResult, run_loop
from .losses import distillation_loss
from .memory import (
    apply_memory_options,
    autocast,
    check_memory_options,
    has_lora,
    merge_lora,
    out_of_memory_advice,
    trainable_parameters,
)
from .parallel import SINGLE, World
from .route_stats import route_statistics


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

    def spread(self, limit: int) -> TensorData:
        """At most ``limit`` samples, evenly spaced over the whole set (every k-th): drawn from every
        episode, not the first few (on the simulated arm the first 200 held-out samples read a
        baseline's error ratio 1.170 where the whole split reads 1.102, 200 spread 1.063)."""
        if len(self) <= limit:
            return self
        rows = torch.linspace(0, len(self) - 1, limit).round().long()
        return TensorData({k: v[rows] for k, v in self.inputs.items()}, self.targets[rows], self.sample_ids[rows])


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
    width = max(t.shape[1] for t in input_ids)  # tokenizers pad to the longest text of each call
    input_ids = [nn.functional.pad(t, (0, width - t.shape[1])) for t in input_ids]  # 0 = PAD
    return TensorData({"pixels": torch.cat(pixels), "input_ids": torch.cat(input_ids)},
                      torch.cat(targets), torch.cat(ids))


def _done_path(run_dir: Path, stage: str) -> Path:
    return run_dir / f"{stage}_done.json"


def _started_path(run_dir: Path, stage: str) -> Path:
    return run_dir / f"{stage}_started.json"


class StaleRunError(ConfigError):
    """``runs/`` holds a stage finished (or started) with other settings: reusing it would
    silently mix two runs."""


RESTART_HINT = "rerun with --restart (job key restart: true) to start over, or use another output directory"


def stage_identity(config: dict, **extra) -> dict:
    """What a stage's result depends on: its settings (never the device or the process layout,
    so resuming elsewhere is fine) plus e.g. the dataset index and the teacher weights' sha256."""
    config = {k: v for k, v in config.items() if k not in ("device", "distributed")}
    return json.loads(json.dumps({"config": config, **extra}))


def _flat(data: object, prefix: str = "") -> dict:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    out: dict = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def describe_changes(old: dict | None, new: dict) -> str:
    """``a.b 1 -> 2, c 'x' -> 'y'``: the leaves that differ (at most 6 named)."""
    if old is None:
        return "no settings recorded (written by an older version)"
    a, b = _flat(old), _flat(new)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    text = ", ".join(f"{k} {a.get(k, '(none)')!r} -> {b.get(k, '(none)')!r}" for k in changed[:6])
    return text + (f" (+{len(changed) - 6} more)" if len(changed) > 6 else "")


def _check(path: Path, identity: dict, what: str, stage: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StaleRunError(f"{path}: unreadable ({exc}); {RESTART_HINT}") from exc
    if data.get("identity") != identity:
        raise StaleRunError(f"{path.parent}: stage {stage!r} was {what} with other settings "
                            f"({describe_changes(data.get('identity'), identity)}); {RESTART_HINT}")
    return data


def stage_done(run_dir: Path, stage: str, identity: dict) -> dict | None:
    """The done marker's info when ``stage`` finished with exactly ``identity``; None when it has
    not finished. StaleRunError when it finished, or was started, with other settings."""
    path = _done_path(run_dir, stage)
    if path.exists():
        return _check(path, identity, "finished", stage)
    started = _started_path(run_dir, stage)
    if started.exists():
        _check(started, identity, "started", stage)
    return None


def mark_started(run_dir: Path, stage: str, identity: dict) -> None:
    """Recorded before a stage's first step, so a killed stage is resumed only with its own settings."""
    if not _started_path(run_dir, stage).exists():
        write_json_atomic(_started_path(run_dir, stage), {"identity": identity})


def mark_done(run_dir: Path, stage: str, info: dict, identity: dict) -> None:
    write_json_atomic(_done_path(run_dir, stage), {**info, "identity": identity})


def clear_stages(run_dir: Path, stages: list[str]) -> list[Path]:
    """Remove every file of ``stages`` in ``run_dir`` (``<stage>_*``): a restart. -> what was removed."""
    removed = []
    for stage in stages:
        for path in sorted(run_dir.glob(f"{stage}_*")):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def train_teacher(teacher: VLATeacher, data: TensorData, cfg: OptimConfig, run_dir: Path,
                  stop_after: int | None = None, memory: MemoryConfig | None = None,
                  world: World = SINGLE, augment_shift_px: int = 0) -> LoopResult:
    """Behaviour cloning with the action head's own task loss on the normalised chunk.

    ``augment_shift_px > 0``: every training image is shifted by a random offset of up to that
    many pixels (``augment.random_shift``; needs uint8 ``pixels`` inputs, as TinyVLA's).

    ``result.model`` is the trained teacher (LoRA adapters merged once training finished);
    under FSDP ``teacher`` itself is sharded in place and ``result.model`` is a plain copy on
    rank 0 (None elsewhere)."""
    if len(data) == 0:
        raise DatasetError("no training samples")
    memory = memory or MemoryConfig()
    teacher.normalizer.fit(data.targets)
    device = _device_of(teacher)
    check_memory_options(memory, device)
    apply_memory_options(teacher, memory)
    forward_loss = world.wrap_method(teacher, "forward_loss", shard_units=list(teacher.layers))
    optimizer = torch.optim.AdamW(trainable_parameters(teacher), lr=cfg.lr, weight_decay=cfg.weight_decay)

    if augment_shift_px and not (isinstance(data.inputs.get("pixels"), torch.Tensor)
                                 and data.inputs["pixels"].dtype == torch.uint8):
        raise ConfigError("augment_shift_px: this teacher's inputs have no uint8 'pixels' images to shift")

    def step(rows: torch.Tensor):
        inputs, target = data.rows(rows, device)
        if augment_shift_px:
            generator = batch_generator(cfg.seed, rows)
            inputs = {**inputs, "pixels": random_shift(inputs["pixels"], augment_shift_px, generator)}
        with autocast(memory, device):
            loss = forward_loss(inputs, teacher.normalizer.normalize(target))
        return loss, {"task": loss.item()}

    result = run_loop("teacher", run_dir, {"teacher": teacher}, optimizer, cfg, len(data), step, stop_after,
                      world=world, oom_advice=out_of_memory_advice(memory, cfg.batch_size, world.distributed))
    return finish_training(result, teacher, world)


def finish_training(result: LoopResult, model: nn.Module, world: World) -> LoopResult:
    """Set ``result.model``: unsharded (FSDP), LoRA merged (when training finished), no checkpointing."""
    trained = world.unwrap(model)
    if trained is not None:
        backbone = trained.backbone if isinstance(trained, RoutedStudent) else trained
        if result.finished and has_lora(backbone):
            merge_lora(backbone)
        if isinstance(backbone, VLATeacher):
            backbone.gradient_checkpointing = False
    result.model = trained
    return result


def train_probes(teacher: VLATeacher, probes: LayerProbes, data: TensorData, cfg: OptimConfig, run_dir: Path,
                 stop_after: int | None = None, memory: MemoryConfig | None = None,
                 world: World = SINGLE) -> LoopResult:
    """Stage 1: frozen teacher; graph modules + per-layer heads learn to predict the action
    from every layer (mean over layers of the MSE to ground truth). Several processes: the
    probes are data-parallel (DDP, also under ``fsdp``: they are small; the teacher is frozen)."""
    memory = memory or MemoryConfig()
    teacher.eval().requires_grad_(False)
    device = _device_of(teacher)
    check_memory_options(memory, device)
    run_probes = world.wrap_method(probes, "forward", strategy="ddp")
    optimizer = torch.optim.AdamW(probes.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(rows: torch.Tensor):
        inputs, target = data.rows(rows, device)
        with torch.no_grad(), autocast(memory, device):
            _, per_layer, batch = teacher(inputs, return_hidden=True)
        with autocast(memory, device):
            _, layer_actions = run_probes(per_layer, batch.attention_mask)
        per_layer_mse = ((layer_actions.float() - teacher.normalizer.normalize(target)[:, None]) ** 2).mean((0, 2, 3))
        loss = per_layer_mse.mean()
        return loss, {"probe": loss.item(), "first_layer": per_layer_mse[0].item(),
                      "last_layer": per_layer_mse[-1].item()}

    result = run_loop("probe", run_dir, {"probes": probes}, optimizer, cfg, len(data), step, stop_after,
                      world=world, oom_advice=out_of_memory_advice(memory, cfg.batch_size, world.distributed))
    result.model = probes
    return result


class TeacherOutputs:
    """The teacher's final action chunks (normalised units), keyed by sample id: what the
    student is compared with after stage 2, without the teacher in memory."""

    def __init__(self, sample_ids: torch.Tensor, actions: torch.Tensor) -> None:
        self.sample_ids, self.actions = sample_ids, actions
        self._row = {int(s): i for i, s in enumerate(sample_ids.tolist())}

    def lookup(self, sample_ids: torch.Tensor) -> torch.Tensor:
        try:
            rows = torch.tensor([self._row[int(s)] for s in sample_ids.tolist()])
        except KeyError as exc:
            raise KeyError(f"no cached teacher output for sample id {exc.args[0]}") from exc
        return self.actions[rows]

    def save(self, path: Path) -> None:
        tensors = {"sample_ids": self.sample_ids, "actions": self.actions.contiguous()}
        write_atomically(path, lambda tmp: save_file(tensors, str(tmp)))

    @classmethod
    def load(cls, path: Path) -> TeacherOutputs:
        t = load_file(str(path))
        return cls(t["sample_ids"], t["actions"])


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
def record_teacher(teacher: VLATeacher, probes: LayerProbes, data: TensorData, batch_size: int = 64,
                   world: World = SINGLE, memory: MemoryConfig | None = None) -> TeacherRecords:
    """The teacher's per-layer semantics and probe actions for every sample (each rank records
    a contiguous part; every rank gets the whole set)."""
    memory = memory or MemoryConfig()
    device = _device_of(teacher)
    teacher.eval()
    probes.eval()
    mine = torch.arange(len(data)).tensor_split(world.size)[world.rank]
    sems, acts = [], []
    for start in range(0, len(mine), batch_size):
        inputs, _ = data.rows(mine[start:start + batch_size], device)
        with autocast(memory, device):
            _, per_layer, batch = teacher(inputs, return_hidden=True)
            sem, act = probes(per_layer, batch.attention_mask)
        sems.append(sem.float().cpu())
        acts.append(act.float().cpu())
    parts = world.gather_objects((torch.cat(sems) if sems else None, torch.cat(acts) if acts else None))
    semantics = torch.cat([p[0] for p in parts if p[0] is not None])
    actions = torch.cat([p[1] for p in parts if p[1] is not None])
    return TeacherRecords(data.sample_ids.clone(), semantics, actions)


def distill_student(student: RoutedStudent, probes: LayerProbes, records: TeacherRecords, data: TensorData,
                    cfg: DistillConfig, run_dir: Path, stop_after: int | None = None,
                    world: World = SINGLE) -> LoopResult:
    """Stage 2: train router (+ backbone) with the full ActDistill objective. The probes
    are frozen: they define the semantic space the teacher records live in. With
    ``router.credit: measured`` the router learns from the layers' measured values instead of the
    objective's gate gradient (``layer_credit.py``).

    Needs no teacher model: the teacher enters only through ``records`` (sample-keyed).
    ``result.model`` is the trained student (LoRA merged once training finished); under FSDP
    ``student`` is sharded in place and ``result.model`` is a plain copy on rank 0 (None elsewhere).
    """
    probes.eval().requires_grad_(False)
    device = _device_of(student)
    check_memory_options(cfg.memory, device)
    # the student was copied from a teacher that stage 1 froze: set trainability explicitly,
    # or a fresh run would silently train only the router while a resumed one trains both
    student.backbone.requires_grad_(cfg.train_backbone)
    student.router.requires_grad_(True)
    apply_memory_options(student.backbone, cfg.memory)
    forward_train = world.wrap_method(student, "forward_train", shard_units=list(student.backbone.layers))
    groups = [{"params": list(student.router.parameters()), "lr": cfg.router_lr}]
    if cfg.train_backbone:
        groups.append({"params": trainable_parameters(student.backbone), "lr": cfg.student.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.student.weight_decay)
    normalizer = student.backbone.normalizer
    gather = world.gather if world.distributed else None
    steer = cfg.loss.budget_control and isinstance(student.router, Router)
    depths = list(student.router.cfg.train_depths) if steer else []
    measured = isinstance(student.router, Router) and student.router.cfg.credit == "measured"
    schedule = {"keep_target": cfg.loss.keep_ratio, "step": 0}

    def on_step(step: int, total: int) -> None:
        schedule["keep_target"] = cfg.loss.keep_target(step / max(total, 1))
        schedule["step"] = step

    def step(rows: torch.Tensor):
        inputs, target = data.rows(rows, device)
        target_n = normalizer.normalize(target)
        teacher_sem, teacher_act = (t.to(device) for t in records.lookup(data.sample_ids[rows]))
        keep_target, depth = schedule["keep_target"], None
        if depths and keep_target <= cfg.loss.keep_ratio:  # after the warm-up: the depths in turn (by step:
            depth = depths[schedule["step"] % len(depths)]  # the same on every rank and after a resume)
            keep_target = depth / student.num_layers
        trained_min_layers = student.min_layers
        student.min_layers = depth or trained_min_layers
        try:
            with autocast(cfg.memory, device):
                out = forward_train(inputs, decode_actions=False, target=target_n,
                                    keep_ratio=keep_target if steer else None, gather=gather,
                                    gate_gradient=not measured)
                student_sem, student_act = probes(out.per_layer_hidden, out.batch.attention_mask)
        finally:
            student.min_layers = trained_min_layers
        loss, terms = distillation_loss(cfg.loss, out.task_loss.float(), student_sem.float(), teacher_sem,
                                        student_act.float(), teacher_act, target_n, out.gate_probs.float(),
                                        out.gates.float(), gather=gather, keep_target=keep_target)
        if measured:  # the router learns from the layers' measured values instead (layer_credit.py)
            share = -(-student.router.cfg.credit_samples // world.size)  # each rank its part of the global batch's
            sampled = torch.arange(min(share, len(rows)), device=device)
            layers = sample_credit_layers(len(sampled), student.num_layers, student.router.cfg.credit_layers)
            values = measure_layer_values(student.backbone, out.batch.select(sampled), out.gates[sampled] > 0.5,
                                          target_n[sampled], layers)
            logits = out.logits[sampled]
            if gather is not None:  # standardised over the global batch's samples, as in one process
                logits, values = gather(logits), gather(values)
            credit = credit_loss(logits, values)
            loss = loss + credit
            terms["credit"] = credit.item()
        if steer:  # the cut of the global batch: every rank moves its offset the same way
            student.router.track_offset(out.batch_offset, cfg.loss.budget_momentum)
            terms["keep_target"] = keep_target
            terms["logit_offset"] = float(student.router.logit_offset)
            if depths:
                terms["depth"] = depth or trained_min_layers
        return loss, terms

    result = run_loop("student", run_dir, {"student": student}, optimizer, cfg.student, len(data), step, stop_after,
                      world=world, oom_advice=out_of_memory_advice(cfg.memory, cfg.student.batch_size,
                                                                   world.distributed), on_step=on_step)
    return finish_training(result, student, world)


@torch.no_grad()
def calibrate_router(student: RoutedStudent, data: TensorData, keep_ratio: float,
                     batch_size: int = 256) -> float | None:
    """Set a learned router's threshold offset to the exact ``keep_ratio`` quantile of its scores
    on ``data`` (the training inputs; only embeddings and the router run). Deterministic in the
    weights, so a restored stage 2 gets the same offset. -> the executed fraction on ``data``
    (None for routers without a threshold to calibrate)."""
    if not isinstance(student.router, Router):
        return None
    device = _device_of(student)
    student.eval()
    logits = []
    for start in range(0, len(data), batch_size):
        inputs, _ = data.rows(torch.arange(start, min(start + batch_size, len(data))), device)
        batch = student.backbone.embed(inputs)
        logits.append(student.router.logits(batch.hidden, batch.vision_mask, batch.text_mask).float())
    return student.router.calibrate(torch.cat(logits), keep_ratio, student.min_layers, student.threshold)


def restore_student(student: RoutedStudent, run_dir: Path, cfg: DistillConfig) -> RoutedStudent:
    """Load a finished stage 2 from ``run_dir/student_state.pt`` into ``student`` (adapters
    re-created and merged when it was trained with LoRA)."""
    state = torch.load(Path(run_dir) / "student_state.pt", weights_only=True, map_location="cpu")["modules"]["student"]
    lora_a = [k for k in state if ".lora_A." in k]
    if lora_a:  # the adapters' rank and targets are in the saved shapes and names
        rank = int(state[lora_a[0]].shape[0])
        targets = sorted({k.split(".lora_A.")[0].rsplit(".", 1)[-1] for k in lora_a})
        apply_memory_options(student.backbone, MemoryConfig(lora_rank=rank, lora_alpha=cfg.memory.lora_alpha,
                                                            lora_targets=targets))
        student.load_state_dict(state)
        merge_lora(student.backbone)
    else:
        student.load_state_dict(state)
    student.backbone.gradient_checkpointing = False
    return student.eval()


@torch.no_grad()
def predict(model: nn.Module, data: TensorData, routed: bool, batch_size: int = 64):
    """-> (normalised predicted chunks [N, H, 7] on CPU, executed layers [N, L] bool or None)."""
    device = _device_of(model)
    model.eval()
    predictions, executed = [], []
    for start in range(0, len(data), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(data)))
        inputs, _ = data.rows(rows, device)
        if routed:
            out = model.forward_routed(inputs)
            predictions.append(out.actions.float().cpu())
            executed.append(out.executed.cpu())
        else:
            predictions.append(model(inputs).float().cpu())
    return torch.cat(predictions), (torch.cat(executed) if routed else None)


def teacher_outputs(teacher: VLATeacher, data: TensorData, batch_size: int = 64,
                    world: World = SINGLE) -> TeacherOutputs:
    """The teacher's predictions on ``data``, cached by sample id (each rank predicts a
    contiguous part; every rank gets them all)."""
    mine = torch.arange(len(data)).tensor_split(world.size)[world.rank]
    part = TensorData({k: v[mine] for k, v in data.inputs.items()}, data.targets[mine], data.sample_ids[mine])
    local = predict(teacher, part, routed=False, batch_size=batch_size)[0] if len(part) else None
    actions = torch.cat([a for a in world.gather_objects(local) if a is not None])
    return TeacherOutputs(data.sample_ids.clone(), actions)


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData, routed: bool, batch_size: int = 64) -> dict:
    """Held-out action MSE in normalised units (every dimension weighs the same) and, for a
    routed student, what the router did (``route_stats.route_statistics``: executed fraction,
    per-layer frequency, distinct routes)."""
    normalizer = model.backbone.normalizer if routed else model.normalizer
    predicted, executed = predict(model, data, routed, batch_size)
    errors = ((predicted - normalizer.normalize(data.targets.to(normalizer.mean.device)).float().cpu()) ** 2)
    result = {"action_mse": errors.mean((1, 2)).mean().item(), "samples": len(data)}
    if routed:
        result.update(route_statistics(executed))
    return result


@torch.no_grad()
def agreement(student: RoutedStudent, teacher: VLATeacher | TeacherOutputs, data: TensorData,
              batch_size: int = 64) -> float:
    """MSE (normalised units) between student and teacher actions; ``teacher`` may be the model
    or its cached outputs (then the teacher need not be in memory)."""
    if not isinstance(teacher, TeacherOutputs):
        teacher = teacher_outputs(teacher, data, batch_size)
    predicted, _ = predict(student, data, routed=True, batch_size=batch_size)
    return ((predicted - teacher.lookup(data.sample_ids)) ** 2).mean((1, 2)).mean().item()
