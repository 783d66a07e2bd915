"""Resume never reuses stale work: every stage's markers record its settings, the dataset and
the teacher weights' sha256; a rerun with other ones is one StaleRunError naming the change,
``restart=True`` starts over, and markers are whole JSON files (written tmp + replace)."""

import dataclasses
import json

import pytest
import torch

from actdistill_ros.core.config import DistillConfig, GraphConfig, OptimConfig, TeacherTrainConfig
from actdistill_ros.core.data.synthetic import make_dataset
from actdistill_ros.core.model.checkpoint import load_teacher, save_teacher
from actdistill_ros.core.training.runs import run_baselines, run_distillation, run_teacher_training
from actdistill_ros.core.training.stages import StaleRunError

from core_helpers import TINY

DISTILL = DistillConfig(graph=GraphConfig(graph_dim=16, semantic_dim=16, top_k=4),
                        probe=OptimConfig(epochs=1, batch_size=16), student=OptimConfig(epochs=1, batch_size=16),
                        device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("resume")
    make_dataset(12, steps=4, image_size=TINY.image_size, seed=0).save(out / "data")
    teacher_cfg = TeacherTrainConfig(model=TINY, optim=OptimConfig(epochs=1, batch_size=16), device="cpu")
    teacher_dir = run_teacher_training(out / "data", out, teacher_cfg)
    result = run_distillation(out / "data", teacher_dir, out, DISTILL)
    return out, teacher_dir, teacher_cfg, result


def test_markers_record_settings_and_teacher_weights(run):
    out, _, _, _ = run
    student = json.loads((out / "runs" / "student_done.json").read_text())["identity"]
    assert student["config"]["student"]["epochs"] == 1 and "device" not in student["config"]
    assert len(student["teacher_sha256"]) == 64 and len(student["dataset"]) == 64
    assert not list((out / "runs").glob("*.tmp")), "markers are replaced atomically, no leftovers"


def test_same_settings_reuse_finished_stages(run):
    out, teacher_dir, teacher_cfg, result = run
    before = (out / "runs" / "student_metrics.jsonl").read_text()
    assert run_teacher_training(out / "data", out, dataclasses.replace(teacher_cfg, device="auto")) == teacher_dir
    again = run_distillation(out / "data", teacher_dir, out, dataclasses.replace(DISTILL, device="auto"))
    assert (out / "runs" / "student_metrics.jsonl").read_text() == before
    assert again.metrics["executed_layer_fraction"] == pytest.approx(result.metrics["executed_layer_fraction"])


def test_other_settings_are_an_error_naming_the_change(run):
    out, teacher_dir, teacher_cfg, _ = run
    with pytest.raises(StaleRunError, match=r"'student' was finished with other settings "
                                            r"\(config\.student\.epochs 1 -> 3\); rerun with --restart"):
        run_distillation(out / "data", teacher_dir, out, dataclasses.replace(
            DISTILL, student=OptimConfig(epochs=3, batch_size=16)))
    with pytest.raises(StaleRunError, match=r"'teacher' .*config\.optim\.lr 0\.001 -> 0\.002"):
        run_teacher_training(out / "data", out, dataclasses.replace(teacher_cfg, optim=OptimConfig(
            epochs=1, batch_size=16, lr=2e-3)))


def test_other_teacher_weights_are_an_error(run, tmp_path):
    out, teacher_dir, _, _ = run
    teacher = load_teacher(teacher_dir)
    with torch.no_grad():
        next(teacher.parameters()).add_(1e-3)
    other = save_teacher(teacher, tmp_path / "other_teacher")
    assert (other / "config.json").read_text() != "" and other != teacher_dir
    with pytest.raises(StaleRunError, match=r"'probe' .*teacher_sha256 '[0-9a-f]{64}' -> '[0-9a-f]{64}'"):
        run_distillation(out / "data", other, out, DISTILL)


def test_a_killed_stage_resumes_only_with_its_own_settings_and_restart_starts_over(run, tmp_path):
    out, teacher_dir, _, _ = run
    stopped = run_distillation(out / "data", teacher_dir, tmp_path, DISTILL, stop_after={"probe": 1})
    assert stopped.metrics["stopped"] == "probe" and (tmp_path / "runs" / "probe_started.json").is_file()
    changed = dataclasses.replace(DISTILL, probe=OptimConfig(epochs=2, batch_size=16))
    started = r"'probe' was started with other settings \(config\.probe\.epochs 1 -> 2\)"
    with pytest.raises(StaleRunError, match=started):
        run_distillation(out / "data", teacher_dir, tmp_path, changed)
    result = run_distillation(out / "data", teacher_dir, tmp_path, changed, restart=True)
    done = json.loads((tmp_path / "runs" / "probe_done.json").read_text())
    assert done["identity"]["config"]["probe"]["epochs"] == 2
    assert [json.loads(line)["step"] for line in (tmp_path / "runs" / "probe_metrics.jsonl").read_text().splitlines()] \
        == list(range(1, done["steps"] + 1)), "restart: the killed run's metrics are gone, not continued"
    assert result.metrics["train_samples"] > 0


def test_baselines_refuse_other_settings(run):
    out, teacher_dir, _, result = run
    run_baselines(out / "data", teacher_dir, out, DISTILL, layers=2)
    with pytest.raises(StaleRunError, match=r"'baseline_static' .*config\.student\.lr 0\.001 -> 0\.01"):
        run_baselines(out / "data", teacher_dir, out, dataclasses.replace(
            DISTILL, student=OptimConfig(epochs=1, batch_size=16, lr=1e-2)), layers=2)
    assert run_baselines(out / "data", teacher_dir, out, DISTILL, layers=2, restart=True)
