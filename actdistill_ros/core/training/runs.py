"""End-to-end stages over a dataset directory, each resumable and skipped once done:

teacher: dataset -> behaviour-cloned TinyVLA checkpoint
distill: dataset + teacher -> stage 1 (probes, teacher records) -> stage 2 -> exported student
baselines: dataset + teacher -> fixed / random routes at the student's layer count, same budget

Each stage's ``runs/<stage>_started.json`` / ``_done.json`` records what its result depends on
(its settings, the dataset index's and the teacher weights' sha256): a rerun with other settings
in the same directory is a StaleRunError naming what changed, never a silent reuse;
``restart=True`` removes the stage's files and starts it over.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..atomic_files import write_json_atomic
from ..config import DistillConfig, TeacherTrainConfig
from ..data.dataset import DatasetError, EpisodeDataset
from ..device import resolve_device
from ..model.checkpoint import load_teacher, save_student, save_teacher, weights_sha256
from ..model.graph import LayerProbes
from ..model.student import RoutedStudent
from ..model.tiny_vla import TinyVLA
from ..typed_config import ConfigError, to_dict
from .baselines import (
    BASELINES,
    SELECTION_SAMPLES,
    GreedySelection,
    finetune_routed,
    fixed_route_student,
    greedy_layer_selection,
    random_route_student,
)
from .parallel import World, device_for, init_world
from .route_stats import routing_warnings
from .stages import (
    TeacherOutputs,
    TeacherRecords,
    TensorData,
    agreement,
    build_tensor_data,
    calibrate_router,
    clear_stages,
    distill_student,
    evaluate,
    mark_done,
    mark_started,
    record_teacher,
    restore_student,
    stage_done,
    stage_identity,
    teacher_outputs,
    train_probes,
    train_teacher,
)

log = logging.getLogger(__name__)
Progress = Callable[[str, dict], None]


def split_dataset(dataset_dir: str | Path, held_out_fraction: float, teacher,
           max_train_episodes: int = 0) -> tuple[TensorData, TensorData]:
    """The same episode split for every stage; optionally only the first training episodes."""
    dataset = EpisodeDataset.load(dataset_dir)
    train, held_out = dataset.split(held_out_fraction, seed=0)
    n_train = len(train.episodes)
    if max_train_episodes:
        train = EpisodeDataset(train.episodes[:max_train_episodes], train.meta)
    return build_tensor_data(train, teacher), build_tensor_data(held_out, teacher, id_offset=n_train)


@dataclass
class FinishedJob:
    """A distillation job's output read back for analysis: its stage settings and teacher, and
    the same train/held-out split its stages used."""

    config: dict  # the student checkpoint's distillation config (OptimConfig / LossConfig fields, ...)
    teacher_dir: Path
    dataset_dir: Path
    teacher: TinyVLA
    train: TensorData
    held_out: TensorData


def read_finished_job(run_dir: str | Path, teacher_dir: str | Path | None = None,
                      dataset_dir: str | Path | None = None, student_dir: str | Path | None = None) -> FinishedJob:
    """``run_dir``: a job's output_dir; the teacher, dataset and student default to its
    ``teacher/``, ``dataset/`` and ``student/`` (a job given a dataset elsewhere needs it named)."""
    run = Path(run_dir)
    teacher_path, dataset_path = Path(teacher_dir or run / "teacher"), Path(dataset_dir or run / "dataset")
    config = json.loads((Path(student_dir or run / "student") / "config.json").read_text())["distillation"]["config"]
    teacher = load_teacher(teacher_path)
    train, held_out = split_dataset(dataset_path, config["held_out_fraction"], teacher,
                                    config.get("max_train_episodes", 0))
    return FinishedJob(config, teacher_path, dataset_path, teacher, train, held_out)


def dataset_provenance(dataset_dir: str | Path) -> dict:
    """What a checkpoint records about its data: no absolute paths (they are machine-specific)."""
    meta = json.loads((Path(dataset_dir) / "dataset.json").read_text())  # the index only, not the episodes
    return {"name": Path(dataset_dir).name, "episodes": meta.get("num_episodes"), "steps": meta.get("num_steps"),
            "source": meta.get("source", "")}


def _check_paths(dataset_dir: str | Path, out_dir: str | Path) -> None:
    """Bad paths are one-line errors before anything is created (no empty output directory)."""
    if not (Path(dataset_dir) / "dataset.json").is_file():
        raise DatasetError(f"dataset {dataset_dir}: no dataset.json (not an episode dataset directory)")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"output directory {out_dir} exists and is not a directory")


def dataset_sha256(dataset_dir: str | Path) -> str:
    """Hash of the dataset index (episode files, lengths, instructions): cheap, and it changes
    whenever ingestion produced other episodes."""
    return hashlib.sha256((Path(dataset_dir) / "dataset.json").read_bytes()).hexdigest()


def run_teacher_training(dataset_dir: str | Path, out_dir: str | Path, cfg: TeacherTrainConfig,
                         stop_after: int | None = None, world: World | None = None, restart: bool = False) -> Path:
    """-> the teacher checkpoint directory ``out_dir/teacher``. Several processes: started by
    torchrun with ``cfg.distributed.strategy`` ddp/fsdp (or an initialised ``world``)."""
    _check_paths(dataset_dir, out_dir)
    out_dir = Path(out_dir)
    run_dir = out_dir / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    teacher_dir = out_dir / "teacher"
    world = world or init_world(cfg.distributed)
    if restart and world.is_main:
        clear_stages(run_dir, ["teacher"])
    world.barrier()
    identity = stage_identity(to_dict(cfg), dataset=dataset_sha256(dataset_dir))
    if stage_done(run_dir, "teacher", identity) and (teacher_dir / "config.json").is_file():
        log.info("teacher already trained: %s", teacher_dir)
        return teacher_dir
    if world.is_main:
        mark_started(run_dir, "teacher", identity)
    torch.manual_seed(cfg.optim.seed)
    device = device_for(world, resolve_device(cfg.device))
    teacher = TinyVLA(cfg.model)
    train, held_out = split_dataset(dataset_dir, cfg.held_out_fraction, teacher)
    teacher.to(device)
    result = train_teacher(teacher, train, cfg.optim, run_dir, stop_after=stop_after, memory=cfg.memory, world=world,
                           augment_shift_px=cfg.augment_shift_px)
    if not result.finished or not world.is_main:
        world.barrier()
        return teacher_dir
    teacher = result.model.to(device)
    metrics = evaluate(teacher, held_out, routed=False)
    save_teacher(teacher.cpu(), teacher_dir, extra={"training": {
        "config": to_dict(cfg), "held_out": metrics, "dataset": dataset_provenance(dataset_dir)}})
    mark_done(run_dir, "teacher", {"steps": result.steps, "held_out": metrics}, identity)
    world.barrier()
    return teacher_dir


@dataclass
class DistillResult:
    student_dir: Path
    metrics: dict


def run_distillation(dataset_dir: str | Path, teacher_dir: str | Path, out_dir: str | Path, cfg: DistillConfig,
                     progress: Progress | None = None, stop_after: dict | None = None,
                     world: World | None = None, restart: bool = False) -> DistillResult:
    """Stage 1 + stage 2 + export. ``stop_after={'probe'|'student': n}`` simulates a kill (tests).

    The teacher's held-out predictions are computed once and cached by sample id
    (``runs/teacher_heldout_<sha>.safetensors``); with ``memory.release_teacher`` the teacher's
    weights then become the student (no second copy) and the final comparison uses the cache.
    Several processes (torchrun, ``distributed.strategy``): every stage is data-parallel; only
    rank 0 evaluates and exports (other ranks return metrics ``{"rank": r}``). ``restart``: stages 1
    and 2 start over (their files in ``runs/`` are removed first)."""
    _check_paths(dataset_dir, out_dir)
    stop_after = stop_after or {}
    notify = progress or (lambda stage, info: None)
    out_dir = Path(out_dir)
    run_dir = out_dir / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    student_dir = out_dir / "student"
    world = world or init_world(cfg.distributed)
    if restart and world.is_main:
        clear_stages(run_dir, ["probe", "student", "teacher_records", "teacher_heldout"])
    world.barrier()
    device = device_for(world, resolve_device(cfg.device))
    torch.manual_seed(cfg.student.seed)
    teacher_sha = weights_sha256(teacher_dir)
    provenance = {"dataset": dataset_sha256(dataset_dir), "teacher_sha256": teacher_sha}
    everything = to_dict(cfg)
    probe_identity = stage_identity({k: everything[k] for k in ("graph", "probe", "memory", "held_out_fraction",
                                                                "max_train_episodes")}, **provenance)
    student_identity = stage_identity(everything, **provenance)
    # both checked before any work: a changed setting is reported at once, not after stage 1
    probe_finished = stage_done(run_dir, "probe", probe_identity)
    student_finished = stage_done(run_dir, "student", student_identity)
    teacher = load_teacher(teacher_dir).to(device)
    train, held_out = split_dataset(dataset_dir, cfg.held_out_fraction, teacher, cfg.max_train_episodes)
    notify("data", {"train_samples": len(train), "held_out_samples": len(held_out)})

    probes = LayerProbes(teacher.num_layers, teacher.hidden_size, teacher.chunk_size, cfg.graph).to(device)
    records, probe_steps = _probe_stage(teacher, probes, train, cfg, run_dir, probe_identity, probe_finished,
                                        stop_after.get("probe"), world, notify)
    if records is None:
        return DistillResult(student_dir, {"stopped": "probe", "steps": probe_steps})
    cached = _teacher_heldout(teacher, held_out, run_dir / f"teacher_heldout_{teacher_sha[:16]}.safetensors", world)
    teacher_mse = _mse(cached.actions, teacher.normalizer.normalize(held_out.targets.to(device)).cpu())
    world.barrier()

    start = None
    if cfg.router.init_route == "greedy" and not student_finished:  # before the teacher becomes the student
        start = GreedySelection.from_dict(greedy_selection(
            run_dir, teacher, train, _route_start_layers(cfg, teacher.num_layers), dataset_dir, teacher_sha,
            on_search=lambda: notify("student", {"ranking_layers": True}), write=world.is_main))
    if cfg.memory.release_teacher:
        student = RoutedStudent(teacher, cfg.router).to(device)  # the teacher's weights, trained in place
        del teacher
    else:
        student = RoutedStudent.from_teacher(teacher, cfg.router).to(device)
    if start is not None:  # (a resumed stage 2 then restores its own router from its checkpoint)
        student.router.rank_layers(start.levels())
    if not student_finished:
        notify("student", {"started": True})
        if world.is_main:
            mark_started(run_dir, "student", student_identity)
        result = distill_student(student, probes, records, train, cfg, run_dir, stop_after=stop_after.get("student"),
                                 world=world)
        if not result.finished:
            return DistillResult(student_dir, {"stopped": "student", "steps": result.steps})
        if world.is_main:
            mark_done(run_dir, "student", {"steps": result.steps,
                                           "final": result.history[-1] if result.history else {}},
                      student_identity)
        world.barrier()
        if not world.is_main:
            return DistillResult(student_dir, {"rank": world.rank})
        student = result.model.to(device)
    else:
        if not world.is_main:
            return DistillResult(student_dir, {"rank": world.rank})
        student = restore_student(student, run_dir, cfg).to(device)
        notify("student", {"skipped": True})

    metrics = _held_out_metrics(student, train, held_out, cached, teacher_mse, cfg)
    for warning in metrics["warnings"]:
        log.warning("routing: %s", warning)
    save_student(student.cpu(), student_dir, extra={"distillation": {
        "teacher_sha256": teacher_sha, "dataset": dataset_provenance(dataset_dir),
        "config": to_dict(cfg), "held_out": metrics}})
    write_json_atomic(out_dir / "distill_metrics.json", metrics)
    notify("export", {"student": str(student_dir), **metrics})
    return DistillResult(student_dir, metrics)


def _probe_stage(teacher, probes: LayerProbes, train: TensorData, cfg: DistillConfig, run_dir: Path,
                 identity: dict, finished: bool, stop_after: int | None, world: World,
                 notify: Progress) -> tuple[TeacherRecords | None, int]:
    """Stage 1: train the graph probes and record the teacher, or load both from a finished run.
    -> (records, steps); records None when ``stop_after`` ended the stage early."""
    records_path = run_dir / "teacher_records.safetensors"
    if finished and records_path.exists():
        state = torch.load(run_dir / "probe_state.pt", weights_only=True, map_location=next(probes.parameters()).device)
        probes.load_state_dict(state["modules"]["probes"])
        notify("probe", {"skipped": True})
        notify("probe", {"done": True})
        return TeacherRecords.load(records_path), 0
    notify("probe", {"started": True})
    if world.is_main:
        mark_started(run_dir, "probe", identity)
    result = train_probes(teacher, probes, train, cfg.probe, run_dir, stop_after=stop_after, memory=cfg.memory,
                          world=world)
    if not result.finished:
        return None, result.steps
    records = record_teacher(teacher, probes, train, world=world, memory=cfg.memory)
    if world.is_main:
        records.save(records_path)
        mark_done(run_dir, "probe", {"steps": result.steps, "final": result.history[-1] if result.history else {}},
                  identity)
    world.barrier()
    notify("probe", {"done": True})
    return records, result.steps


def _teacher_heldout(teacher, held_out: TensorData, path: Path, world: World) -> TeacherOutputs:
    """The teacher's held-out predictions, computed once and cached by sample id: afterwards the
    teacher is not needed (``memory.release_teacher`` turns its weights into the student)."""
    cached = TeacherOutputs.load(path) if path.exists() else None
    if cached is None or not torch.equal(cached.sample_ids, held_out.sample_ids):
        cached = teacher_outputs(teacher, held_out, world=world)
        if world.is_main:
            cached.save(path)
    return cached


def _held_out_metrics(student: RoutedStudent, train: TensorData, held_out: TensorData, cached: TeacherOutputs,
                      teacher_mse: float, cfg: DistillConfig) -> dict:
    """What the report and the checkpoint say about the student (with the routing warnings)."""
    calibrated = calibrate_router(student, train, cfg.loss.keep_ratio) if cfg.loss.budget_control else None
    student_eval = evaluate(student, held_out, routed=True)
    return {
        "teacher_action_mse": teacher_mse,
        "student_action_mse": student_eval["action_mse"],
        "student_vs_teacher_mse": agreement(student, cached, held_out),
        "action_error_ratio": student_eval["action_mse"] / max(teacher_mse, 1e-12),
        "executed_layer_fraction": student_eval["executed_layer_fraction"],
        "layer_frequency": student_eval["layer_frequency"],
        "distinct_routes": student_eval["distinct_routes"],
        "top_routes": student_eval["top_routes"],
        "keep_ratio_target": cfg.loss.keep_ratio,
        "train_executed_fraction": calibrated,
        "warnings": routing_warnings(student_eval, cfg.loss.keep_ratio, student.num_layers, student.router.kind),
        "held_out_samples": len(held_out),
        "train_samples": len(train),
    }


def _mse(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over samples of the per-sample MSE (what ``evaluate`` reports)."""
    return ((predicted.float() - target.float()) ** 2).mean((1, 2)).mean().item()


def baseline_layer_count(executed_layer_fraction: float, num_layers: int) -> int:
    """The layers per pass a baseline gets: the student's mean, rounded half up (at least 1)."""
    return max(1, min(num_layers, int(executed_layer_fraction * num_layers + 0.5)))


def run_baselines(dataset_dir: str | Path, teacher_dir: str | Path, out_dir: str | Path, cfg: DistillConfig,
                  layers: int, progress: Progress | None = None, stop_after: dict | None = None,
                  restart: bool = False) -> dict[str, Path]:
    """The baselines of ``baselines.py`` at ``layers`` layers per pass, each with stage 2's budget
    (``cfg.student``: epochs, batch, learning rate) -> ``out_dir/baselines/<name>/`` checkpoints.
    Resumable like every stage (``runs/baseline_<name>_*``); the greedy selection is recorded in
    ``runs/baseline_selection.json`` and reused. Single process."""
    stop_after = stop_after or {}
    notify = progress or (lambda stage, info: None)
    out_dir = Path(out_dir)
    run_dir = out_dir / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    if restart:
        clear_stages(run_dir, ["baseline"])
    device = resolve_device(cfg.device)
    teacher = load_teacher(teacher_dir).to(device)
    train, _ = split_dataset(dataset_dir, cfg.held_out_fraction, teacher, cfg.max_train_episodes)
    provenance = {"teacher_sha256": weights_sha256(teacher_dir), "dataset": dataset_provenance(dataset_dir)}
    everything = to_dict(cfg)
    settings = {k: everything[k] for k in ("student", "memory", "held_out_fraction", "max_train_episodes")}

    selection = greedy_selection(run_dir, teacher, train, layers, dataset_dir, provenance["teacher_sha256"],
                                 on_search=lambda: notify("baselines", {"selecting": layers}))

    built = {
        "static": lambda: fixed_route_student(teacher, selection["layers"]),
        "static_untuned": lambda: fixed_route_student(teacher, selection["layers"]),
        "random": lambda: random_route_student(teacher, layers),
    }
    paths: dict[str, Path] = {}
    for name in BASELINES:
        path = out_dir / "baselines" / name
        paths[name] = path
        identity = stage_identity({**settings, "layers_per_pass": layers, "layers": selection["layers"]},
                                  dataset=dataset_sha256(dataset_dir), teacher_sha256=provenance["teacher_sha256"])
        if stage_done(run_dir, f"baseline_{name}", identity) and (path / "config.json").is_file():
            notify("baselines", {"skipped": name})
            continue
        torch.manual_seed(cfg.student.seed)
        mark_started(run_dir, f"baseline_{name}", identity)
        student = built[name]().to(device)
        steps = 0
        if name != "static_untuned":
            notify("baselines", {"training": name})
            result = finetune_routed(student, train, cfg.student, run_dir, f"baseline_{name}", memory=cfg.memory,
                                     stop_after=stop_after.get(name))
            if not result.finished:
                return {}
            student, steps = result.model, result.steps
        save_student(student.cpu(), path, extra={"baseline": {"name": name, "layers_per_pass": layers,
                                                              "selection": selection, "finetune_steps": steps,
                                                              **provenance}})
        mark_done(run_dir, f"baseline_{name}", {"steps": steps}, identity)
    return paths


def greedy_selection(run_dir: Path, teacher, train: TensorData, layers: int, dataset_dir: str | Path,
                     teacher_sha: str, on_search: Callable[[], None] | None = None, write: bool = True) -> dict:
    """The static baseline's greedy layer selection down to ``layers`` (``baselines.py``), read from
    ``run_dir/baseline_selection.json`` when it was made from this teacher, dataset and layer count,
    else searched (``on_search`` first: it takes minutes on big models) and written there: the
    baselines and a router started from it (``router.init_route: greedy``) share one search.
    ``write=False`` (ranks other than 0): no file and no progress bar."""
    path = run_dir / "baseline_selection.json"
    selection = json.loads(path.read_text()) if path.is_file() else None
    made_from = {"layers_per_pass": layers, "teacher_sha256": teacher_sha,
                 "dataset_sha256": dataset_sha256(dataset_dir)}
    if selection is None or any(selection.get(k) != v for k, v in made_from.items()):
        if on_search:
            on_search()
        greedy = greedy_layer_selection(teacher, train.spread(SELECTION_SAMPLES), layers, progress=write)
        selection = {**made_from, "layers": greedy.layers, "samples": min(len(train), SELECTION_SAMPLES),
                     "trace": [asdict(step) for step in greedy.trace]}
        if write:
            write_json_atomic(path, selection)
    return selection


def _route_start_layers(cfg: DistillConfig, num_layers: int) -> int:
    """The layer count a greedy-started router's top level holds: its ``min_layers`` when it routes
    top-k, else the budget's share of the layers."""
    return cfg.router.min_layers if cfg.router.min_layers >= 1 else max(1, round(cfg.loss.keep_ratio * num_layers))
