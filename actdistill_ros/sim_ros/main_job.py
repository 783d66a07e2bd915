"""The embedded default in one command: teleop demonstrations -> rosbags -> teacher -> routed
student -> closed-loop evaluation of both, on the simulated tabletop.

Every stage is the real thing a user runs on hardware: nodes over DDS, mcap bags written by
the recorder, the distillation job ingesting them, the policy node driving the arm. Stages
that finished are skipped on a rerun with the same ``out_dir`` (the distillation job resumes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from actdistill_ros.core.config import ActionHeadConfig, TinyVLAConfig
from actdistill_ros.core.typed_config import to_dict
from actdistill_ros.distill_job import config_from_mapping, run_distill_job
from actdistill_ros.sim.tasks import DEFAULT_SUITE, task_names

from .closed_loop import EvalConfig, evaluate, find_baselines
from .eval_report import eval_markdown
from .record import RecordConfig, record_demonstrations

# The embedded default's model: a 64 px camera through a small CNN down to 8 x 8 vision tokens
# (normalised), instructions as hashed words, a 6 x 128 decoder and a regression head with a
# spatial read-out. Each of these was measured on this task (docs/results/README.md, "Closed loop
# on the simulated arm"): the linear patch embedding and the byte tokenizer learned slowly,
# un-normalised vision tokens sat on a predict-the-mean plateau, and the pooled head without the
# read-out did not learn at all.
SIM_MODEL = TinyVLAConfig(image_size=64, patch_size=8, hidden_size=128, num_layers=6, num_heads=4,
                          intermediate_size=256, max_text_tokens=48, chunk_size=4, vision_stem="conv",
                          vision_norm=True, tokenizer="words",
                          action_head=ActionHeadConfig(kind="regression", spatial_dim=16))


OFFLINE_KEYS = ("flops_ratio", "speedup", "executed_layer_fraction", "action_error_ratio", "episodes", "steps",
                "distinct_routes", "warnings")


@dataclass
class MainJobPreset:
    record: RecordConfig
    teacher_epochs: int
    probe_epochs: int
    student_epochs: int
    eval_episodes: int  # per task
    keep_ratio: float = 0.3333  # 2 of the 6 layers
    # every input runs exactly its own top keep_ratio x L layers: with the default of 1 the router
    # moved depth between inputs (12% got one layer; keep 0.5: held-out error 1.32x against 1.06x
    # with exactly 3; docs/results/README.md, benchmarks/router_diagnostic.py)
    min_layers: int = 2
    # the router learns each layer's measured effect (RouterConfig.credit): top 2 of 6 read 1.06x the
    # teacher's held-out error against 1.24x by the gate gradient, its routes informative (docs/results/README.md)
    credit: str = "measured"
    batch_size: int = 32
    augment_shift_px: int = 2  # teacher training: random image shifts (a regulariser against memorising demos)
    model: TinyVLAConfig = field(default_factory=lambda: SIM_MODEL)


PRESETS: dict[str, MainJobPreset] = {
    # the whole chain in a few minutes; too little training for a good policy
    "quick": MainJobPreset(RecordConfig(episodes=30), teacher_epochs=2, probe_epochs=1, student_epochs=1,
                           eval_episodes=3),
    # docs/results/README.md (`make demo`: the shipped teacher; `make shipped-checkpoints`: trains it too)
    "default": MainJobPreset(RecordConfig(episodes=600), teacher_epochs=30, probe_epochs=1, student_epochs=4,
                             eval_episodes=50),
}


def distill_job_mapping(preset: MainJobPreset, out: Path, device: str, seed: int, baselines: bool = False,
                        train_teacher: bool = False, threads: int = 0) -> dict:
    """The distillation job a user would write for these bags (see config/distill.yaml): with
    ``train_teacher`` it trains the TinyVLA teacher on them first, else it distils the shipped one."""
    teacher: dict = {"train_teacher": False}
    if train_teacher:
        teacher = {"train_teacher": True,
                   "teacher_training": {"model": to_dict(preset.model), "augment_shift_px": preset.augment_shift_px,
                                        "optim": {"epochs": preset.teacher_epochs, "seed": seed}}}
    return {
        "bags": str(out / "demos" / "bags"),
        "image_topic": "/camera/image_raw",
        "instruction_topic": "/instruction",
        "action_topic": "/teleop/twist",
        "action_source": "twist",
        "gripper_topic": "/teleop/gripper",
        "control_rate_hz": 10.0,
        "min_episode_steps": 3,
        **teacher,
        "keep_ratio": preset.keep_ratio,
        "epochs": preset.student_epochs,
        "probe_epochs": preset.probe_epochs,
        "batch_size": preset.batch_size,
        "device": device,
        "threads": threads,
        "output_dir": str(out / "distill"),
        "baselines": baselines,
        "distill": {"student": {"seed": seed}, "probe": {"seed": seed}, "router": {"min_layers": preset.min_layers,
                                                                                     "credit": preset.credit}},
    }


def run_main_job(out_dir: str | Path, preset: str = "default", seed: int = 0, device: str = "auto",
                 eval_episodes: int | None = None, log: Callable[[str], None] = print,
                 baselines: bool = False, train_teacher: bool = False, threads: int = 0, tasks: str = "reach",
                 demos: int | None = None, teacher_epochs: int | None = None) -> dict:
    """Record -> distil -> evaluate. ``train_teacher``: train the teacher on the recorded bags too
    (what made the shipped one) instead of distilling the shipped teacher. ``baselines``: also
    distil the baselines (static pruning tuned/untuned, random routes; core/training/baselines.py) and
    drive the arm with each, beside teacher and student. ``threads``: torch CPU threads of the
    training stages (0 = one per core; 1 on a machine other work shares: threads that wait for
    a busy core slowed a training step ~10x on 2 cores). ``tasks``: the tasks recorded and
    evaluated (sim/tasks.py: a suite, ``all`` or names); any but the default suite needs
    ``train_teacher`` (the shipped teacher knows only those). ``demos``/``teacher_epochs``
    override the preset's demonstrations and teacher epochs."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    unknown_to_shipped = sorted(set(task_names(tasks)) - set(task_names(DEFAULT_SUITE)))
    if unknown_to_shipped and not train_teacher:
        raise ValueError(f"tasks {unknown_to_shipped}: the shipped teacher was trained on the {DEFAULT_SUITE!r} suite "
                         "only; add --train-teacher to train one on these demonstrations")
    p = PRESETS[preset]
    p = replace(p, record=replace(p.record, seed=seed, image_size=p.model.image_size, tasks=tasks,
                                  episodes=demos or p.record.episodes),
                teacher_epochs=teacher_epochs or p.teacher_epochs)
    out = Path(out_dir)
    times: dict[str, float] = {}

    started = time.monotonic()
    demos = out / "demos"
    if not (demos / "record_summary.json").is_file():
        log(f"[1/3] recording {p.record.episodes} teleoperated demonstrations (scripted expert, mcap bags)")
        summary = record_demonstrations(demos, p.record)
    else:
        summary = json.loads((demos / "record_summary.json").read_text())
        log(f"[1/3] demonstrations already recorded in {demos}")
    times["record_s"] = time.monotonic() - started

    started = time.monotonic()
    teacher = "train the TinyVLA teacher" if train_teacher else "the shipped teacher"
    log(f"[2/3] distillation job: ingest bags -> {teacher} -> stage 1 -> stage 2 -> export"
        + (" -> baselines" if baselines else ""))
    job_cfg = config_from_mapping(distill_job_mapping(p, out, device, seed, baselines, train_teacher, threads))

    def progress(event: dict) -> None:
        if event.get("state") in ("started", "done", "skipped", "failed"):
            log(f"  {event.get('stage')}: {event.get('state')}")

    job = run_distill_job(job_cfg, progress=progress)
    times["distill_s"] = time.monotonic() - started

    started = time.monotonic()
    eval_cfg = EvalConfig(episodes=eval_episodes or p.eval_episodes, seed=seed, device=device, tasks=tasks)
    log(f"[3/3] closed-loop evaluation over DDS: {eval_cfg.episodes} episodes per task, teacher and student")
    result = evaluate(job.teacher_dir, job.student_dir, eval_cfg, out / "eval", log,
                      baselines=find_baselines(job.output_dir / "baselines") if baselines else None)
    times["eval_s"] = time.monotonic() - started
    result["main_job"] = {"preset": preset, "seed": seed, "device": device, "seconds": times,
                          "teacher": "trained on these demonstrations" if train_teacher else "shipped",
                          "tasks": task_names(tasks), "teacher_epochs": p.teacher_epochs,
                          "expert_success_rate": summary["expert_success_rate"],
                          "demonstrations": len(summary["episodes"]),
                          "offline": {k: job.report.get(k) for k in OFFLINE_KEYS},
                          "offline_baselines": job.report.get("baselines", {}),
                          "warnings": job.report.get("warnings", []),
                          "record": asdict(p.record), "model": to_dict(p.model)}
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "eval.md").write_text(eval_markdown(result))
    log((out / "eval.md").read_text())
    return result
