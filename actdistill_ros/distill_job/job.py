"""``run_distill_job``: bags -> dataset -> (teacher) -> stage 1 -> stage 2 -> export -> report.

Output directory layout::

    dataset/            the ingested EpisodeDataset + ingest_summary.json (reused while the bags
                        and the ingest settings are unchanged)
    teacher/            with train_teacher: the trained teacher checkpoint; with a transformers model
                        directory as teacher: that model + its action head (see teachers/teacher_stage.py)
    runs/               resumable stage state: <stage>_state.pt, <stage>_metrics.jsonl,
                        <stage>_done.json, teacher_records.safetensors, job.json
    student/            the exported student (config.json + model.safetensors)
    report.json, report.md, plots/*.png

Resuming: a rerun with the same ``output_dir`` skips finished stages and continues an
interrupted one from its last checkpoint (see ``core/training/loop.py``). ``runs/job.json`` records what
the run was started with (dataset, teacher weights' sha256, training settings); a rerun with
different ones is an error naming what changed instead of silently mixing two runs (``restart:
true`` starts over). Nothing already computed is deleted on an error:
a failed re-ingestion leaves the previous dataset, checkpoints are only ever replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.atomic_files import write_json_atomic
from ..core.data.dataset import DatasetError, Episode, EpisodeDataset
from ..core.model.checkpoint import (
    STUDENT_FORMAT,
    TEACHER_FORMAT,
    CheckpointError,
    default_teacher_path,
    load_teacher,
    weights_sha256,
)
from ..core.training.loop import batches_per_epoch
from ..core.training.runs import run_distillation, run_teacher_training
from ..core.training.stages import RESTART_HINT
from ..core.typed_config import ConfigError, flatten, to_dict
from ..ingest import SUMMARY_FILE, IngestError, IngestProgress, cache_key, find_bags, ingest
from .config import DistillJobConfig

log = logging.getLogger(__name__)

ProgressCallback = Callable[[dict], None]
JOB_FILE = "job.json"


class DistillJobError(RuntimeError):
    """The job cannot run with this input (missing bags, bad teacher, unusable data, a run dir
    started with other settings); the message says what and where."""


# Errors a caller should report as "bad input" (exit status 2) rather than a crash.
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DistillJobError)


@dataclass
class JobResult:
    output_dir: Path
    dataset_dir: Path
    teacher_dir: Path
    student_dir: Path
    finished: bool  # False when ``stop_after`` interrupted a stage (tests)
    stopped: str | None = None  # the interrupted stage
    report: dict[str, Any] = field(default_factory=dict)
    report_json: Path | None = None
    report_md: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage of this run


# ------------------------------------------------------------------------------ progress


class _Progress:
    """Builds the progress events (JSON-ready dicts) and serialises calls to the callback.

    Event keys: ``stage`` (ingest|teacher|probe|student|baselines|export|report|job), ``state``
    (started|running|done|skipped|stopped|failed|warning|verdict: the baselines against the student),
    ``stage_index``/``num_stages``, ``fraction`` of the stage (0..1), ``step``/``total`` when counted,
    ``message``, plus stage details (loss terms...).
    """

    def __init__(self, callback: ProgressCallback | None, stages: list[str]) -> None:
        self.callback = callback
        self.stages = stages
        self.lock = threading.Lock()
        self.skipped: set[str] = set()

    def __call__(self, stage: str, state: str, **info: Any) -> None:
        if state == "skipped":
            self.skipped.add(stage)
        elif state == "done" and stage in self.skipped:  # a resumed stage is reported once: skipped
            return
        event = {
            "stage": stage,
            "state": state,
            "stage_index": self.stages.index(stage) if stage in self.stages else len(self.stages),
            "num_stages": len(self.stages),
            "time": round(time.time(), 3),
            **info,
        }
        if "fraction" not in event and state in ("done", "skipped"):
            event["fraction"] = 1.0
        log.debug("progress %s", event)
        if self.callback is not None:
            with self.lock:
                self.callback(json.loads(json.dumps(event, default=str)))


class _MetricsWatcher:
    """Follows a stage's ``<stage>_metrics.jsonl`` from a thread and reports the newest step
    (the training loops log every step there), at most every ``interval`` seconds."""

    def __init__(self, path: Path, stage: str, total: int, emit: _Progress, interval: float = 0.5) -> None:
        self.path, self.stage, self.total, self.emit, self.interval = path, stage, total, emit, interval
        self._stop = threading.Event()
        self._offset = 0
        self._last_step = -1
        self._thread = threading.Thread(target=self._run, name=f"watch-{stage}", daemon=True)

    def start(self) -> _MetricsWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._poll()  # the last steps, however short the stage was

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def _poll(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size < self._offset:  # the loop rewrote the file on resume
            self._offset = 0
        newest = None
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for line in chunk[: end + 1].splitlines():
            try:
                newest = json.loads(line)
            except ValueError:
                continue
        if newest is None or newest.get("step", 0) == self._last_step:
            return
        self._last_step = int(newest.get("step", 0))
        terms = {k: v for k, v in newest.items() if k not in ("step", "epoch")}
        self.emit(self.stage, "running", step=self._last_step, total=self.total, epoch=newest.get("epoch"),
                  fraction=round(min(1.0, self._last_step / max(self.total, 1)), 4), losses=terms)


# ------------------------------------------------------------------------------- helpers


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:24]


def check_teacher(cfg: DistillJobConfig) -> tuple[Path, int]:
    """The teacher checkpoint directory and its input image size; DistillJobError when unusable."""
    builtin = not cfg.teacher.strip()
    path = default_teacher_path() if builtin else Path(cfg.teacher).expanduser()
    what = f"teacher {path}" + (" (the built-in default teacher)" if builtin else "")
    if not path.exists():
        hint = (" is missing from this installation: set `teacher` to a teacher checkpoint or train_teacher: true"
                if builtin else " does not exist: give a teacher checkpoint directory (`actdistill train-teacher` "
                "makes one) or set train_teacher: true")
        raise DistillJobError(what + hint)
    if not path.is_dir():
        raise DistillJobError(f"{what}: not a directory (a checkpoint is a directory with config.json and "
                              "model.safetensors)")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise DistillJobError(f"{what}: no config.json, not a teacher checkpoint")
    try:
        info = json.loads(config_path.read_text())
    except ValueError as exc:
        raise DistillJobError(f"{what}: config.json is not valid JSON ({exc})") from exc
    fmt = info.get("format") if isinstance(info, dict) else None
    if fmt is None and isinstance(info, dict) and "model_type" in info:
        return path, _check_hf_teacher(cfg, path)
    if fmt is None:
        raise DistillJobError(f"{what}: config.json has neither an actdistill 'format' nor a transformers "
                              "'model_type': not a teacher checkpoint or model directory")
    if fmt == STUDENT_FORMAT:
        raise DistillJobError(f"{what}: is a student checkpoint ({STUDENT_FORMAT}), a teacher is needed")
    if fmt != TEACHER_FORMAT:
        raise DistillJobError(f"{what}: format {fmt!r} is not a teacher checkpoint ({TEACHER_FORMAT!r})")
    try:
        teacher = load_teacher(path)
    except CheckpointError as exc:
        raise DistillJobError(f"teacher: {exc}") from exc
    return path, int(teacher.cfg.image_size)


def _check_hf_teacher(cfg: DistillJobConfig, path: Path) -> int:
    """A transformers model directory as the teacher: its files, architecture and processor (no weights
    loaded yet); -> the image size its processor wants."""
    from ..teachers.model_dir import inspect_model_dir
    from ..teachers.processors import load_processor, processor_image_size

    options = cfg.hf_teacher_options()
    try:
        inspect_model_dir(path, options.trust_remote_code)
        processor = load_processor(path, options.trust_remote_code)
    except CheckpointError as exc:
        raise DistillJobError(f"teacher: {exc}") from exc
    return options.image_size or processor_image_size(processor.image_processor)


def is_hf_teacher(cfg: DistillJobConfig) -> bool:
    """``teacher`` is a transformers model directory (not an actdistill checkpoint)."""
    from ..teachers.model_dir import is_hf_model_dir

    return bool(cfg.teacher.strip()) and is_hf_model_dir(Path(cfg.teacher).expanduser())


def train_samples(dataset_dir: Path, held_out_fraction: float) -> int:
    """Training samples after the episode split, from ``dataset.json`` alone (no images read):
    the real ``EpisodeDataset.split`` on stand-in episodes of the same lengths."""
    index = json.loads((dataset_dir / "dataset.json").read_text())
    stand_ins = [
        Episode(np.zeros((e["steps"], 1, 1, 3), np.uint8), np.zeros((e["steps"], 7), np.float32), "x")
        for e in index["episodes"]
    ]
    train, _ = EpisodeDataset(stand_ins).split(held_out_fraction, seed=0)
    return train.num_steps


def _dataset_summary(dataset_dir: Path) -> dict[str, Any]:
    path = dataset_dir / SUMMARY_FILE
    if path.is_file():
        return json.loads(path.read_text())
    index = json.loads((dataset_dir / "dataset.json").read_text())
    return {
        "episodes": index.get("num_episodes", len(index.get("episodes", []))),
        "steps": index.get("num_steps", sum(e["steps"] for e in index.get("episodes", []))),
        "skipped_bags": [],
        "episode_details": [{"source": e.get("source", e["file"]), "instruction": e.get("instruction", ""),
                             "steps": e["steps"]} for e in index.get("episodes", [])],
        "note": "dataset given directly (no ingest summary)",
    }


def _check_dataset(dataset_dir: Path) -> None:
    try:
        dataset = EpisodeDataset.load(dataset_dir)
    except DatasetError as exc:
        raise DistillJobError(f"dataset: {exc}") from exc
    if len(dataset.episodes) < 2:
        raise DistillJobError(f"dataset {dataset_dir}: {len(dataset.episodes)} episode(s); at least 2 are needed "
                              "(whole episodes are held out for evaluation)")


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; the old ``dst`` is removed only after the new one is complete."""
    old = dst.with_name(dst.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        dst.rename(old)
    src.rename(dst)
    if old.exists():
        shutil.rmtree(old)


# ---------------------------------------------------------------------------------- job


class _Job:
    def __init__(self, cfg: DistillJobConfig, progress: ProgressCallback | None, stop_after: dict | None) -> None:
        self.cfg = cfg
        self.stop_after = dict(stop_after or {})
        self.out = Path(cfg.output_dir).expanduser()
        self.runs = self.out / "runs"
        self.hf_teacher = is_hf_teacher(cfg)
        with_teacher = cfg.train_teacher or self.hf_teacher
        stages = ["ingest", *(["teacher"] if with_teacher else []), "probe", "student", "export",
                  *(["baselines"] if cfg.baselines else []), "report"]
        self.emit = _Progress(progress, stages)
        self.distill_cfg = cfg.distill_config()
        self.teacher_cfg = cfg.teacher_train_config() if cfg.train_teacher else None
        self.seconds: dict[str, float] = {}

    # -- run identity ------------------------------------------------------------------

    def _identity(self, dataset_dir: Path | None, teacher: dict[str, Any]) -> dict[str, Any]:
        """What a run in ``runs/`` depends on (the device is not part of it: resuming elsewhere is fine)."""
        distill = to_dict(self.distill_cfg)
        distill.pop("device", None)
        identity: dict[str, Any] = {"teacher": teacher, "distill": distill}
        if dataset_dir is not None:
            identity["dataset"] = _sha(dataset_dir / "dataset.json")
        if self.teacher_cfg is not None:
            teacher_training = to_dict(self.teacher_cfg)
            teacher_training.pop("device", None)
            identity["teacher_training"] = teacher_training
        return identity

    def _recorded(self) -> dict[str, Any] | None:
        path = self.runs / JOB_FILE
        return json.loads(path.read_text())["identity"] if path.is_file() else None

    def _check_identity(self, identity: dict[str, Any]) -> None:
        """Compare the keys of ``identity`` with the ones recorded when the run in ``runs/`` started."""
        recorded = self._recorded()
        if recorded is None:
            return
        changed = sorted(k for k in identity if recorded.get(k) != identity.get(k))
        if changed:
            details = "; ".join(_diff(k, recorded.get(k), identity.get(k)) for k in changed)
            raise DistillJobError(
                f"output_dir {self.out} holds a run started with other settings ({details}); {RESTART_HINT}")

    def _write_identity(self, identity: dict[str, Any]) -> None:
        self.runs.mkdir(parents=True, exist_ok=True)
        path = self.runs / JOB_FILE
        if not path.is_file():
            write_json_atomic(path, {"identity": identity, "config": self.cfg.to_dict(),
                                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def _restart(self) -> None:
        """``restart: true``: everything but the ingested dataset (keyed by bags + ingest settings) goes."""
        produced_teacher = self.cfg.train_teacher or self.hf_teacher
        for name in ("runs", "student", "baselines", "plots", *(["teacher"] if produced_teacher else [])):
            if (self.out / name).is_dir():
                shutil.rmtree(self.out / name)
        for name in ("report.json", "report.md", "distill_metrics.json"):
            (self.out / name).unlink(missing_ok=True)
        self.emit("job", "running", message=f"restart: previous run in {self.out} removed")

    # -- stages --------------------------------------------------------------------------

    def _timed(self, stage: str, started: float) -> None:
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.monotonic() - started, 3)

    def dataset(self, image_size: int) -> tuple[Path, dict[str, Any]]:
        started = time.monotonic()
        cfg = self.cfg
        if cfg.dataset.strip():
            dataset_dir = Path(cfg.dataset).expanduser()
            if not dataset_dir.is_dir():
                raise DistillJobError(f"dataset {dataset_dir}: does not exist (or is not a directory)")
            _check_dataset(dataset_dir)
            self.emit("ingest", "skipped", message=f"using dataset {dataset_dir}")
            self._timed("ingest", started)
            return dataset_dir, _dataset_summary(dataset_dir)

        ingest_cfg = cfg.ingest_config(image_size)
        try:
            key = cache_key(ingest_cfg, find_bags(ingest_cfg.bag_paths))
        except IngestError as exc:
            raise DistillJobError(f"bags: {exc}") from exc
        dataset_dir = self.out / "dataset"
        summary_path = dataset_dir / SUMMARY_FILE
        if summary_path.is_file() and (dataset_dir / "dataset.json").is_file():
            summary = json.loads(summary_path.read_text())
            if summary.get("cache", {}).get("key") == key:
                self.emit("ingest", "skipped", message="bags unchanged since the last ingestion",
                          episodes=summary.get("episodes"), steps=summary.get("steps"))
                self._timed("ingest", started)
                return dataset_dir, summary

        self.out.mkdir(parents=True, exist_ok=True)
        partial = self.out / ".dataset.partial"
        if partial.exists():
            shutil.rmtree(partial)
        self.emit("ingest", "started", fraction=0.0)

        def on_ingest(p: IngestProgress) -> None:
            within = p.done / p.total if p.total else (1.0 if p.stage in ("done", "skipped", "cached") else 0.0)
            self.emit("ingest", "running", bag=p.bag, bag_index=p.bag_index, num_bags=p.num_bags,
                      bag_stage=p.stage, fraction=round(min(1.0, (p.bag_index + within) / max(p.num_bags, 1)), 4))

        try:
            result = ingest(ingest_cfg, partial, progress=on_ingest, show_progress=sys.stderr.isatty())
        except IngestError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise DistillJobError(f"ingest: {exc}") from exc
        try:
            _check_dataset(partial)
            # an existing run was built on the old dataset: refuse before replacing it
            recorded = self._recorded()
            if recorded is not None and recorded.get("dataset") != _sha(partial / "dataset.json"):
                raise DistillJobError(
                    f"output_dir {self.out} holds a run on another dataset (the bags or ingest settings changed); "
                    f"{RESTART_HINT}")
        except DistillJobError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        _replace_dir(partial, dataset_dir)
        summary = result.summary
        self.emit("ingest", "done", episodes=summary["episodes"], steps=summary["steps"],
                  skipped_bags=[s["bag"] for s in summary.get("skipped_bags", [])],
                  skipped=summary.get("skipped_bags", []))
        for warning in summary.get("warnings", []):  # a bag read short of its own index
            self.emit("ingest", "warning", message=warning)
        self._timed("ingest", started)
        return dataset_dir, summary

    def teacher(self, dataset_dir: Path) -> Path:
        assert self.teacher_cfg is not None
        started = time.monotonic()
        teacher_dir = self.out / "teacher"
        if (self.runs / "teacher_done.json").is_file() and (teacher_dir / "config.json").is_file():
            self.emit("teacher", "skipped", message="teacher already trained")
            return teacher_dir
        tcfg = self.teacher_cfg
        total = tcfg.optim.epochs * batches_per_epoch(train_samples(dataset_dir, tcfg.held_out_fraction),
                                                      tcfg.optim.batch_size)
        self.emit("teacher", "started", total=total, fraction=0.0)
        watcher = _MetricsWatcher(self.runs / "teacher_metrics.jsonl", "teacher", total, self.emit).start()
        try:
            run_teacher_training(dataset_dir, self.out, tcfg, stop_after=self.stop_after.get("teacher"))
        finally:
            watcher.stop()
            self._timed("teacher", started)
        return teacher_dir

    def hf_teacher_stage(self, dataset_dir: Path, model_dir: Path) -> bool:
        """Transformers model + action head -> out/teacher (a new head is fitted first); True when done."""
        from ..teachers.teacher_stage import prepare_hf_teacher

        started = time.monotonic()
        if (self.runs / "teacher_done.json").is_file() and (self.out / "teacher" / "config.json").is_file():
            self.emit("teacher", "skipped", message="transformers teacher already prepared")
            return True
        from ..teachers.options import CORE_HEADS

        options = self.cfg.hf_teacher_options()
        fitting = options.head in CORE_HEADS  # a new head is fitted on the demos; action_tokens is the model's own
        total = options.head_epochs * batches_per_epoch(
            train_samples(dataset_dir, self.distill_cfg.held_out_fraction), self.cfg.batch_size) if fitting else 0
        self.emit("teacher", "started", total=total, fraction=0.0, message=f"{model_dir}: {options.head} head")
        watcher = _MetricsWatcher(self.runs / "teacher_metrics.jsonl", "teacher", total, self.emit).start()
        try:
            _, done = prepare_hf_teacher(dataset_dir, model_dir, self.out, options, batch_size=self.cfg.batch_size,
                                         held_out_fraction=self.distill_cfg.held_out_fraction,
                                         device=self.cfg.device, seed=self.distill_cfg.student.seed,
                                         stop_after=self.stop_after.get("teacher"))
        except CheckpointError as exc:
            raise DistillJobError(f"teacher: {exc}") from exc
        except torch.OutOfMemoryError as exc:  # the message names the stage and what to change
            raise DistillJobError(str(exc)) from exc
        finally:
            watcher.stop()
            self._timed("teacher", started)
        return done

    def distill(self, dataset_dir: Path, teacher_dir: Path) -> dict[str, Any]:
        dcfg = self.distill_cfg
        n_train = train_samples(dataset_dir, dcfg.held_out_fraction)
        totals = {
            "probe": dcfg.probe.epochs * batches_per_epoch(n_train, dcfg.probe.batch_size),
            "student": dcfg.student.epochs * batches_per_epoch(n_train, dcfg.student.batch_size),
        }
        watchers: dict[str, _MetricsWatcher] = {}
        clock: dict[str, float] = {}
        skipped: set[str] = set()

        def finish(stage: str) -> None:
            watcher = watchers.pop(stage, None)
            if watcher is not None:
                watcher.stop()
            if stage in clock:
                self._timed(stage, clock.pop(stage))

        def on_stage(stage: str, info: dict) -> None:
            if stage in totals and info.get("started"):
                clock[stage] = time.monotonic()
                self.emit(stage, "started", total=totals[stage], fraction=0.0)
                watchers[stage] = _MetricsWatcher(self.runs / f"{stage}_metrics.jsonl", stage, totals[stage],
                                                  self.emit).start()
            elif stage == "student" and info.get("ranking_layers"):
                self.emit("student", "running", message="ranking the layers for the router's start "
                                                        "(router.init_route: greedy; the static baseline's search)")
            elif stage in totals and info.get("skipped"):
                skipped.add(stage)
                self.emit(stage, "skipped", message=f"{stage} stage already finished")
            elif stage == "probe" and info.get("done"):
                finish("probe")
                if "probe" not in skipped:
                    self.emit("probe", "done", step=totals["probe"], total=totals["probe"])
            elif stage == "export":
                finish("student")
                if "student" not in skipped:
                    self.emit("student", "done", step=totals["student"], total=totals["student"])
                self.emit("export", "done", student=info.get("student"))

        try:
            result = run_distillation(dataset_dir, teacher_dir, self.out, dcfg, progress=on_stage,
                                      stop_after={k: v for k, v in self.stop_after.items() if k in totals})
        except DatasetError as exc:
            raise DistillJobError(f"dataset: {exc}") from exc
        except torch.OutOfMemoryError as exc:
            raise DistillJobError(str(exc)) from exc
        finally:
            for stage in list(watchers):
                finish(stage)
        return {"student_dir": result.student_dir, "metrics": result.metrics, "totals": totals}

    def baselines(self, dataset_dir: Path, teacher_dir: Path, metrics: dict[str, Any]) -> dict[str, Path]:
        """Fixed and random routes at the student's layer count, stage 2's budget each."""
        from ..core.training.runs import baseline_layer_count, run_baselines

        started = time.monotonic()
        dcfg = self.distill_cfg
        layers = baseline_layer_count(metrics["executed_layer_fraction"], len(metrics["layer_frequency"]))
        total = dcfg.student.epochs * batches_per_epoch(train_samples(dataset_dir, dcfg.held_out_fraction),
                                                        dcfg.student.batch_size)
        self.emit("baselines", "started", fraction=0.0, layers_per_pass=layers,
                  message=f"static/random routes at {layers} layers per pass, {total} fine-tuning steps each")
        watchers: list[_MetricsWatcher] = []

        def on_baseline(stage: str, info: dict) -> None:
            if "training" in info:
                name = f"baseline_{info['training']}"
                watchers.append(_MetricsWatcher(self.runs / f"{name}_metrics.jsonl", "baselines", total,
                                                self.emit).start())
            elif "skipped" in info:
                self.emit("baselines", "running", message=f"{info['skipped']}: already trained")

        try:
            paths = run_baselines(dataset_dir, teacher_dir, self.out, dcfg, layers, progress=on_baseline,
                                  stop_after={k[len("baseline_"):]: v for k, v in self.stop_after.items()
                                              if k.startswith("baseline_")})
        finally:
            for watcher in watchers:
                watcher.stop()
            self._timed("baselines", started)
        if paths:
            self.emit("baselines", "done", baselines=sorted(paths))
        return paths

    # -- all ------------------------------------------------------------------------------

    def run(self) -> JobResult:
        cfg = self.cfg
        if cfg.restart:
            self._restart()
        if cfg.train_teacher:
            assert self.teacher_cfg is not None
            teacher_dir, image_size = self.out / "teacher", self.teacher_cfg.model.image_size
            teacher_identity: dict[str, Any] = {"trained": True}
        else:
            teacher_dir, image_size = check_teacher(cfg)
            try:  # the weights, not where they are: a moved teacher resumes, a retrained one does not
                teacher_identity = {"weights_sha256": weights_sha256(teacher_dir)}
            except (CheckpointError, OSError) as exc:
                raise DistillJobError(f"teacher: {exc}") from exc
            if self.hf_teacher:
                teacher_identity["hf_teacher"] = to_dict(cfg.hf_teacher_options())
        self._check_identity(self._identity(None, teacher_identity))  # before any data work

        dataset_dir, summary = self.dataset(image_size)
        identity = self._identity(dataset_dir, teacher_identity)
        self._check_identity(identity)
        self._write_identity(identity)

        student_dir = self.out / "student"
        if cfg.train_teacher:
            teacher_dir = self.teacher(dataset_dir)
            if not (self.runs / "teacher_done.json").is_file():
                self.emit("teacher", "stopped", message="stopped before the end (stop_after)")
                return JobResult(self.out, dataset_dir, teacher_dir, student_dir, False, "teacher",
                                 seconds=self.seconds)
            self.emit("teacher", "done")
        elif self.hf_teacher:
            model_dir, teacher_dir = teacher_dir, self.out / "teacher"
            if not self.hf_teacher_stage(dataset_dir, model_dir):
                self.emit("teacher", "stopped", message="stopped before the end (stop_after)")
                return JobResult(self.out, dataset_dir, teacher_dir, student_dir, False, "teacher",
                                 seconds=self.seconds)
            self.emit("teacher", "done")

        distilled = self.distill(dataset_dir, teacher_dir)
        if "stopped" in distilled["metrics"]:
            stage = distilled["metrics"]["stopped"]
            self.emit(stage, "stopped", step=distilled["metrics"]["steps"], message="stopped before the end")
            return JobResult(self.out, dataset_dir, teacher_dir, student_dir, False, stage, seconds=self.seconds)

        warnings = list(distilled["metrics"].get("warnings", []))
        for warning in warnings:
            self.emit("student", "warning", message=warning)
        baselines: dict[str, Path] = {}
        if cfg.baselines:
            baselines = self.baselines(dataset_dir, teacher_dir, distilled["metrics"])
            if not baselines:
                self.emit("baselines", "stopped", message="stopped before the end (stop_after)")
                return JobResult(self.out, dataset_dir, teacher_dir, distilled["student_dir"], False, "baselines",
                                 seconds=self.seconds)

        from .report import write_report  # matplotlib and the benchmark only when a report is due

        started = time.monotonic()
        self.emit("report", "started", fraction=0.0)
        report, json_path, md_path = write_report(
            cfg, self.out, dataset_dir=dataset_dir, teacher_dir=teacher_dir, student_dir=distilled["student_dir"],
            distill_metrics=distilled["metrics"], dataset_summary=summary, seconds=self.seconds,
            baselines=baselines, warnings=list(summary.get("warnings", [])) + warnings)
        self._timed("report", started)
        report["seconds"] = dict(self.seconds)
        write_json_atomic(json_path, report, default=str)
        self.emit("report", "done", report=str(json_path))
        if report.get("baseline_verdict"):
            self.emit("baselines", "verdict", message=report["baseline_verdict"])
        headline = {k: report.get(k) for k in ("student_checkpoint", "flops_ratio", "speedup",
                                               "executed_layer_fraction", "action_error_ratio")}
        self.emit("job", "done", fraction=1.0, **headline)
        return JobResult(self.out, dataset_dir, teacher_dir, distilled["student_dir"], True, None, report,
                         json_path, md_path, dict(self.seconds))


def _diff(key: str, old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        a, b = flatten(old), flatten(new)
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return f"{key}: " + ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:6])
    return f"{key}: {old!r} -> {new!r}"


def run_distill_job(cfg: DistillJobConfig, progress: ProgressCallback | None = None,
                    stop_after: dict[str, int] | None = None) -> JobResult:
    """Run (or resume) the whole job described by ``cfg``.

    ``progress(event: dict)`` receives JSON-ready events (see ``_Progress``), possibly from a helper
    thread. ``stop_after={'teacher'|'probe'|'student': steps}`` returns early like a kill (tests).
    Raises ConfigError / DistillJobError (``USER_ERRORS``) on bad input.
    """
    cfg.validate()
    job = _Job(cfg, progress, stop_after)
    fresh = not job.out.exists()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return job.run()
    except Exception as exc:
        job.emit("job", "failed", message=f"{type(exc).__name__}: {exc}")
        if fresh:
            _remove_if_empty(job.out)
        raise
    finally:
        torch.set_num_threads(threads)


def _remove_if_empty(directory: Path) -> None:
    """A run that failed before producing anything leaves no output directory behind (only
    empty folders are removed, deepest first; any file keeps its folders)."""
    for path in sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
