"""The ROS-free distillation job: config, bags -> student + report, resume after a stop and after a
real SIGKILL, and bad input (clear errors, nothing already computed lost).

Everything runs at test size: a TinyVLA of width 32 with 4 layers on 32 px images, 6 episodes of 20
steps, one or two epochs, one torch thread (several test runs may share 2 cores)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file, save_file

from actdistill_ros.core.config import OptimConfig, TeacherTrainConfig
from actdistill_ros.core.model.checkpoint import save_student
from actdistill_ros.core.policy import RoutedPolicy
from actdistill_ros.core.training.loop import batches_per_epoch
from actdistill_ros.core.training.runs import run_teacher_training
from actdistill_ros.core.typed_config import ConfigError, to_dict
from actdistill_ros.distill_job import (
    DistillJobConfig,
    DistillJobError,
    config_from_mapping,
    load_distill_job_config,
    run_distill_job,
)
from actdistill_ros.distill_job.config import field_docs, markdown_table
from actdistill_ros.distill_job.job import train_samples
from actdistill_ros.ingest import IngestConfig, ingest

from core_helpers import TINY
from demo_bags import DemoTopics, write_demo_bag

REPO = Path(__file__).resolve().parent.parent
TOPICS = DemoTopics()
INSTRUCTIONS = [(0.0, "pick up the red block"), (2.0, "push the blue cube")]
REPORT_KEYS = {"student_checkpoint", "flops_ratio", "speedup", "executed_layer_fraction", "action_error_ratio",
               "episodes", "steps", "skipped_bags"}
PLOTS = {"training_curves", "layer_frequency", "keep_ratio_curve", "dataset_summary"}


# ------------------------------------------------------------------------------ shared set-up


@dataclass
class Demo:
    root: Path
    bags: Path  # 3 good bags (2 episodes of 20 steps each) + 1 truncated
    good_bags: list[Path]
    corrupt_bag: Path
    dataset: Path  # the good bags, ingested at 32 px
    teacher: Path  # a tiny teacher trained on it


_DEMO: dict[str, Demo] = {}


def build_demo(root: Path) -> Demo:
    """Bags, dataset and tiny teacher, built once per test session (shared with test_distill_node)."""
    if "demo" in _DEMO:
        return _DEMO["demo"]
    bags = root / "bags"
    good = []
    for i, storage in enumerate(("mcap", "sqlite3", "mcap")):
        write_demo_bag(bags / f"demo_{i}", storage, num_frames=40, image_size=(32, 32), instructions=INSTRUCTIONS)
        good.append(bags / f"demo_{i}")
    corrupt = bags / "demo_corrupt"
    write_demo_bag(corrupt, "mcap", num_frames=40, image_size=(32, 32), instructions=INSTRUCTIONS)
    storage_file = next(p for p in corrupt.iterdir() if p.suffix == ".mcap")
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: len(data) // 2])
    dataset = ingest(IngestConfig(bags=good, image_topic=TOPICS.image, action_topic=TOPICS.action,
                                  instruction_topic=TOPICS.instruction, image_size=(32, 32), min_episode_steps=5),
                     root / "dataset").dataset_dir
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher = run_teacher_training(dataset, root / "teacher_run", TeacherTrainConfig(
            model=TINY, optim=OptimConfig(epochs=4, batch_size=16), device="cpu"))
    finally:
        torch.set_num_threads(threads)
    _DEMO["demo"] = Demo(root, bags, good, corrupt, dataset, teacher)
    return _DEMO["demo"]


def job_mapping(demo: Demo, out: Path, **overrides) -> dict:
    """A test-size job on the demo bags (the corrupt one included)."""
    mapping = {
        "bags": str(demo.bags),
        "image_topic": TOPICS.image,
        "action_topic": TOPICS.action,
        "instruction_topic": TOPICS.instruction,
        "min_episode_steps": 5,
        "teacher": str(demo.teacher),
        "epochs": 2,
        "probe_epochs": 1,
        "batch_size": 16,
        "device": "cpu",
        "threads": 1,
        "output_dir": str(out),
        "report_eval_samples": 20,
        "report_latency_iters": 2,
        "distill": {
            "graph": {"graph_dim": 16, "semantic_dim": 16, "top_k": 4},
            "router": {"router_dim": 8},
            "probe": {"checkpoint_every": 2},
            "student": {"checkpoint_every": 2},
        },
    }
    mapping.update(overrides)
    return mapping


def stage2_total(cfg: DistillJobConfig) -> int:
    dcfg = cfg.distill_config()
    return dcfg.student.epochs * batches_per_epoch(train_samples(Path(cfg.output_dir) / "dataset",
                                                                 dcfg.held_out_fraction), dcfg.student.batch_size)


def metric_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``directory``: 'nothing changed' checks."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def check_student_acts(student_dir: Path) -> None:
    policy = RoutedPolicy.load(student_dir, device="cpu")
    out = policy.act(np.full((32, 32, 3), 120, np.uint8), "pick up the red block")
    assert out.actions.shape == (TINY.chunk_size, 7)
    assert np.isfinite(out.actions).all()
    assert 0 <= out.layers_executed <= TINY.num_layers


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    return build_demo(tmp_path_factory.mktemp("distill_demo"))


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory):
    """One uninterrupted job (the corrupt bag included), with its progress events."""
    out = tmp_path_factory.mktemp("distill_reference") / "out"
    cfg = config_from_mapping(job_mapping(demo, out))
    events: list[dict] = []
    started = time.monotonic()
    result = run_distill_job(cfg, progress=events.append)
    return cfg, result, events, time.monotonic() - started


# ---------------------------------------------------------------------------------- config


def test_every_key_is_documented():
    names = {f for f in DistillJobConfig.__dataclass_fields__}
    docs = {name: text for name, _type, _default, text in field_docs()}
    assert set(docs) == names and all(len(text) > 20 for text in docs.values()), docs
    yaml_text = (REPO / "config" / "distill.yaml").read_text()
    for name in names:
        assert f"{name}:" in yaml_text, f"config/distill.yaml does not mention {name}"
    assert all(f"`{name}`" in markdown_table() for name in names)


def test_shipped_yaml_loads_with_the_required_overrides():
    path = REPO / "config" / "distill.yaml"
    with pytest.raises(ConfigError, match="exactly one of `bags`"):
        load_distill_job_config(path, [])
    cfg = load_distill_job_config(path, ["bags=/data/demos", "instruction_topic=/instruction", "output_dir=/tmp/x",
                                         "distill.loss.gamma=3", "keep_ratio=0.3"])
    dcfg = cfg.distill_config()
    assert (dcfg.loss.gamma, dcfg.loss.keep_ratio, dcfg.student.epochs, dcfg.student.lr) == (3.0, 0.3, 15, 3e-4)
    assert (dcfg.probe.epochs, dcfg.probe.lr, dcfg.probe.batch_size) == (5, 1e-3, 32)
    ingest_cfg = cfg.ingest_config(image_size=64)
    assert ingest_cfg.image_size == (64, 64) and ingest_cfg.instruction_topic == "/instruction"
    assert ingest_cfg.instruction is None and ingest_cfg.gripper_topic is None


def test_ros_and_plain_files_are_the_same(tmp_path):
    mapping = {"bags": ["/a", "/b"], "instruction": "pick", "output_dir": "/o", "epochs": 3,
               "distill": {"loss": {"gamma": 1.5}, "router.threshold": 0.4}}
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(mapping))
    ros = tmp_path / "ros.yaml"
    ros.write_text(yaml.safe_dump({"/**": {"ros__parameters": mapping}}))
    a, b = load_distill_job_config(plain, []), load_distill_job_config(ros, [])
    assert a == b
    assert a.bag_list == ["/a", "/b"]
    assert a.distill_config().router.threshold == 0.4


@pytest.mark.parametrize(
    ("mapping", "overrides", "match"),
    [
        ({"bogus": 1}, [], r"unknown config key\(s\) bogus"),
        ({}, ["epoch=3"], r"unknown config key\(s\) epoch"),
        ({"distill": {"loss": {"gama": 1.0}}}, [], r"distill\.loss\.gama"),
        ({"distill": {"loss": {"keep_ratio": 0.3}}}, [], r"distill\.loss\.keep_ratio: set the top-level key"),
        ({}, ["distill.student.epochs=4"], r"set the top-level key `epochs`"),
        ({"dataset": "/d"}, [], "exactly one of `bags` .* and `dataset`"),
        ({"bags": ""}, [], "exactly one of `bags`"),
        ({"output_dir": ""}, [], "output_dir: required"),
        ({"instruction": "pick"}, [], "exactly one of `instruction_topic` and `instruction`"),
        ({"action_source": "joystick"}, [], "action_source"),
        ({"keep_ratio": 1.5}, [], "^keep_ratio: must be <= 1, got 1.5$"),
        ({"epochs": 0}, [], "epochs: must be > 0, got 0"),
        ({"epochs": "many"}, [], "epochs: must be an integer, got 'many'"),
        ({"train_teacher": True}, [], "teacher: leave empty with train_teacher"),
        ({"teacher_training": {"optim": {"epochs": 1}}}, [], "only used with train_teacher"),
    ],
)
def test_config_errors_name_the_key(tmp_path, mapping, overrides, match):
    base = {"bags": "/data", "instruction_topic": "/instruction", "output_dir": str(tmp_path), "teacher": "/t"}
    base.update(mapping)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError, match=match):
        load_distill_job_config(path, overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_distill_job_config(tmp_path / "nope.yaml", [])


# ------------------------------------------------------------------------------ end to end


def test_end_to_end_bags_to_student_and_report(reference, demo):
    cfg, result, events, seconds = reference
    out = Path(cfg.output_dir)
    assert result.finished and result.stopped is None
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= REPORT_KEYS
    assert report["student_checkpoint"] == str(out / "student")
    assert (report["episodes"], report["steps"]) == (6, 120)
    assert [Path(s["bag"]).name for s in report["skipped_bags"]] == ["demo_corrupt"]  # job still completed
    assert 0 < report["flops_ratio"] < 1.2 and report["speedup"] > 0 and report["action_error_ratio"] > 0
    assert 0 < report["executed_layer_fraction"] <= 1
    assert len(report["layer_frequency"]) == TINY.num_layers
    assert [row["max_layers"] for row in report["curve"]] == list(range(1, TINY.num_layers + 1))
    assert set(report["training"]) == {"probe", "student"}
    assert {"total", "task"} <= set(report["training"]["student"]["final"])
    assert set(report["plots"]) == PLOTS
    for rel in report["plots"].values():
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "FLOPs ratio" in md and "demo_corrupt" in md and "plots/keep_ratio_curve.png" in md
    check_student_acts(out / "student")

    # progress: every stage in order, counted steps for the training stages
    transitions = [(e["stage"], e["state"]) for e in events if e["state"] not in ("running", "warning")]
    assert transitions == [("ingest", "started"), ("ingest", "done"), ("probe", "started"), ("probe", "done"),
                           ("student", "started"), ("student", "done"), ("export", "done"), ("report", "started"),
                           ("report", "done"), ("job", "done")]
    # routing warnings (if any) reach the caller and the report alike
    assert [e["message"] for e in events if e["state"] == "warning"] == report["warnings"]
    assert all(f"**{w}**" in md for w in report["warnings"])
    total = stage2_total(cfg)
    running = [e for e in events if e["stage"] == "student" and e["state"] == "running"]
    assert running and running[-1]["step"] == total and running[-1]["total"] == total
    assert "task" in running[-1]["losses"]
    assert events[-1]["flops_ratio"] == report["flops_ratio"]
    json.dumps(events)  # JSON-ready (what the node publishes)
    print(f"\nreference job: {seconds:.1f} s, stages {result.seconds}")


def test_rerun_of_a_finished_job_redoes_nothing(reference):
    cfg, _, _, _ = reference
    runs = Path(cfg.output_dir) / "runs"
    before = snapshot(runs)
    dataset_before = snapshot(Path(cfg.output_dir) / "dataset")
    events: list[dict] = []
    result = run_distill_job(cfg, progress=events.append)
    assert result.finished
    transitions = [(e["stage"], e["state"]) for e in events if e["state"] != "running"]
    assert ("ingest", "skipped") in transitions and ("probe", "skipped") in transitions
    assert ("student", "skipped") in transitions and ("job", "done") in transitions
    skipped = {stage for stage, state in transitions if state == "skipped"}
    assert not [t for t in transitions if t[1] == "done" and t[0] in skipped], transitions  # said once
    assert not [e for e in events if e["state"] == "running" and e["stage"] in ("probe", "student")]
    assert snapshot(runs) == before
    assert snapshot(Path(cfg.output_dir) / "dataset") == dataset_before


@pytest.fixture(scope="module")
def resumed(demo, tmp_path_factory):
    """The reference job stopped (stop_after) mid stage 2, then rerun: (cfg, runs, first run, rerun, events)."""
    out = tmp_path_factory.mktemp("distill_resumed") / "out"
    cfg = config_from_mapping(job_mapping(demo, out))
    runs = out / "runs"
    stopped = run_distill_job(cfg, stop_after={"student": 5})  # 5: past the checkpoint at 4
    state = {
        "student_state": (runs / "student_state.pt").exists(),
        "student_done": (runs / "student_done.json").exists(),
        "probe_files": {name: (runs / name).read_bytes() for name in ("probe_done.json", "probe_metrics.jsonl")},
        "probe_mtime": (runs / "probe_done.json").stat().st_mtime_ns,
    }
    events: list[dict] = []
    result = run_distill_job(cfg, progress=events.append)
    return cfg, runs, stopped, state, result, events


def test_resume_after_stop_mid_stage2(reference, resumed):
    ref_cfg, _, _, _ = reference
    cfg, runs, stopped, state, result, events = resumed
    assert not stopped.finished and stopped.stopped == "student"
    assert state["student_state"] and not state["student_done"]
    assert result.finished
    assert ("probe", "skipped") in [(e["stage"], e["state"]) for e in events]
    probe_files = state["probe_files"]
    assert {name: (runs / name).read_bytes() for name in probe_files} == probe_files  # stage 1 not redone
    assert (runs / "probe_done.json").stat().st_mtime_ns == state["probe_mtime"]
    ref_done = json.loads((Path(ref_cfg.output_dir) / "runs" / "student_done.json").read_text())
    done = json.loads((runs / "student_done.json").read_text())
    assert done["steps"] == ref_done["steps"] == stage2_total(cfg)
    assert metric_steps(runs / "student_metrics.jsonl") == list(range(1, done["steps"] + 1))
    check_student_acts(result.student_dir)


def test_resumed_run_replays_the_uninterrupted_one(reference, resumed):
    """Batch order and state are restored: the resumed stage 2 logs the same losses as an uninterrupted one."""
    ref_cfg, _, _, _ = reference
    _, runs, _, _, _, _ = resumed
    ref = [json.loads(line) for line in (Path(ref_cfg.output_dir) / "runs" / "student_metrics.jsonl").open()]
    got = [json.loads(line) for line in (runs / "student_metrics.jsonl").open()]
    assert [r["total"] for r in got] == pytest.approx([r["total"] for r in ref], rel=1e-5)


def test_resume_after_sigkill_mid_stage2(demo, tmp_path):
    """A real kill: the job in a subprocess, SIGKILLed once stage 2 has checkpointed, then rerun."""
    out = tmp_path / "out"
    config_path = tmp_path / "job.yaml"
    config_path.write_text(yaml.safe_dump(job_mapping(demo, out, epochs=30)))
    code = ("import sys; from actdistill_ros.distill_job import load_distill_job_config, run_distill_job; "
            "run_distill_job(load_distill_job_config(sys.argv[1], []))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    log = (tmp_path / "job.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-c", code, str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp_path)
    runs = out / "runs"
    try:
        deadline = time.monotonic() + 240
        while not (runs / "student_state.pt").exists():
            assert proc.poll() is None, (tmp_path / "job.log").read_text()
            assert time.monotonic() < deadline, "stage 2 did not checkpoint in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert not (runs / "student_done.json").exists(), "the kill came too late: stage 2 had finished"
    assert (runs / "probe_done.json").exists()
    probe_files = {name: (runs / name).read_bytes() for name in ("probe_done.json", "probe_metrics.jsonl")}
    killed_at = len(metric_steps(runs / "student_metrics.jsonl"))

    cfg = load_distill_job_config(config_path, [])
    events: list[dict] = []
    result = run_distill_job(cfg, progress=events.append)
    assert result.finished
    total = stage2_total(cfg)
    assert 0 < killed_at < total
    assert json.loads((runs / "student_done.json").read_text())["steps"] == total
    assert metric_steps(runs / "student_metrics.jsonl") == list(range(1, total + 1))
    assert {name: (runs / name).read_bytes() for name in probe_files} == probe_files
    states = [(e["stage"], e["state"]) for e in events]
    assert ("probe", "skipped") in states and ("ingest", "skipped") in states
    first_running = next(e for e in events if e["stage"] == "student" and e["state"] == "running")
    assert first_running["step"] > 1  # continued, not restarted
    assert json.loads((out / "report.json").read_text())["student_checkpoint"] == str(out / "student")
    check_student_acts(out / "student")


def test_train_teacher_then_distill_from_a_dataset(demo, tmp_path):
    """train_teacher: true, data from an ingested dataset; a stop during teacher training resumes."""
    mapping = job_mapping(demo, tmp_path / "out", teacher="", train_teacher=True, epochs=1,
                          teacher_training={"model": to_dict(TINY), "optim": {"epochs": 2, "checkpoint_every": 2}})
    del mapping["bags"]
    mapping["dataset"] = str(demo.dataset)
    cfg = config_from_mapping(mapping)
    stopped = run_distill_job(cfg, stop_after={"teacher": 3})
    assert not stopped.finished and stopped.stopped == "teacher"
    events: list[dict] = []
    result = run_distill_job(cfg, progress=events.append)
    assert result.finished and result.teacher_dir == tmp_path / "out" / "teacher"
    assert (result.teacher_dir / "model.safetensors").is_file()
    report = json.loads(result.report_json.read_text())
    assert set(report["training"]) == {"teacher", "probe", "student"}
    assert report["skipped_bags"] == [] and report["episodes"] == 6
    assert ("ingest", "skipped") in [(e["stage"], e["state"]) for e in events]
    check_student_acts(result.student_dir)


# ------------------------------------------------------------------------------- bad input


def test_missing_bags_path(demo, tmp_path):
    cfg = config_from_mapping(job_mapping(demo, tmp_path / "out", bags=str(tmp_path / "nope")))
    with pytest.raises(DistillJobError, match=r"bags: bag path .*nope: does not exist"):
        run_distill_job(cfg)


def test_empty_bag_directory(demo, tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = config_from_mapping(job_mapping(demo, tmp_path / "out", bags=str(tmp_path / "empty")))
    with pytest.raises(DistillJobError, match="no rosbags found"):
        run_distill_job(cfg)


def test_only_corrupt_bags(demo, tmp_path):
    events: list[dict] = []
    cfg = config_from_mapping(job_mapping(demo, tmp_path / "out", bags=str(demo.corrupt_bag)))
    with pytest.raises(DistillJobError, match="no usable data in any bag"):
        run_distill_job(cfg, progress=events.append)
    assert events[-1]["stage"] == "job" and events[-1]["state"] == "failed"
    assert not (tmp_path / "out" / "dataset").exists() and not (tmp_path / "out" / ".dataset.partial").exists()


def test_dataset_that_is_not_one(demo, tmp_path):
    (tmp_path / "notdata").mkdir()
    mapping = job_mapping(demo, tmp_path / "out", dataset=str(tmp_path / "notdata"))
    del mapping["bags"]
    with pytest.raises(DistillJobError, match="not a dataset"):
        run_distill_job(config_from_mapping(mapping))


def _transformers_dir(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    return path


def _student_dir(path: Path) -> Path:
    from core_helpers import tiny_student

    return save_student(tiny_student(), path)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "missing", r"teacher .*missing does not exist"),
        (lambda p: (p / "file").write_text("x") and p / "file", "not a directory"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no config.json"),
        (lambda p: _transformers_dir(p / "hf"), "model_type 'llama' .*not a VLM family this adapter knows"),
        (lambda p: _student_dir(p / "student"), "is a student checkpoint"),
    ],
)
def test_bad_teacher(demo, tmp_path, make, match):
    teacher = make(tmp_path)
    cfg = config_from_mapping(job_mapping(demo, tmp_path / "out", teacher=str(teacher)))
    with pytest.raises(DistillJobError, match=match):
        run_distill_job(cfg)
    assert not (tmp_path / "out").exists()  # failed before writing anything


def test_errors_on_a_finished_run_lose_nothing(reference, demo, tmp_path):
    cfg, _, _, _ = reference
    out = Path(cfg.output_dir)
    base = job_mapping(demo, out)
    (tmp_path / "only_corrupt").mkdir()
    (tmp_path / "only_corrupt" / "bag.mcap").write_bytes(b"not a bag")
    cases = [
        ({"teacher": str(tmp_path / "missing")}, "does not exist"),
        ({"epochs": 3}, r"other settings \(distill: student\.epochs 2 -> 3\)"),
        ({"bags": str(tmp_path / "only_corrupt")}, "no usable data"),
        ({"bags": [str(p) for p in demo.good_bags[:2]]}, "holds a run on another dataset"),
    ]
    for overrides, match in cases:
        before = snapshot(out)
        with pytest.raises(DistillJobError, match=match):
            run_distill_job(config_from_mapping({**base, **overrides}))
        assert snapshot(out) == before, overrides
    assert run_distill_job(cfg).finished  # the original settings still resume (nothing to do)


def test_other_teacher_weights_are_refused_and_restart_starts_over(reference, demo, tmp_path):
    cfg, _, _, _ = reference
    out = tmp_path / "out"
    shutil.copytree(cfg.output_dir, out)
    # the same teacher config.json, other weights: the run identity is the weights' sha256
    teacher = tmp_path / "teacher"
    shutil.copytree(demo.teacher, teacher)
    tensors = load_file(str(teacher / "model.safetensors"))
    first = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[first] = tensors[first] + 1e-3
    save_file(tensors, str(teacher / "model.safetensors"), metadata={"format": "actdistill-teacher"})
    before = snapshot(out)
    changed = r"\(teacher: weights_sha256 '[0-9a-f]{64}' -> '[0-9a-f]{64}'\); rerun with --restart"
    with pytest.raises(DistillJobError, match=changed):
        run_distill_job(config_from_mapping(job_mapping(demo, out, teacher=str(teacher))))
    assert snapshot(out) == before
    result = run_distill_job(config_from_mapping(job_mapping(demo, out, teacher=str(teacher), epochs=3,
                                                             restart=True)))
    assert result.finished
    job = json.loads((out / "runs" / "job.json").read_text())["identity"]
    assert job["distill"]["student"]["epochs"] == 3
    done = json.loads((out / "runs" / "student_done.json").read_text())
    assert done["steps"] == stage2_total(config_from_mapping(job_mapping(demo, out, epochs=3)))
    assert metric_steps(out / "runs" / "student_metrics.jsonl") == list(range(1, done["steps"] + 1)), \
        "restart: the old run's metrics are gone, not continued"
