"""Integration: train a TinyVLA teacher on the synthetic task where the instruction matters,
distill a routed student, and check it skips layers without losing much accuracy."""

import json

import numpy as np
import pytest
import torch

from actdistill_ros.core.config import DistillConfig, GraphConfig, LossConfig, OptimConfig, TeacherTrainConfig
from actdistill_ros.core.data.synthetic import make_dataset
from actdistill_ros.core.policy import RoutedPolicy
from actdistill_ros.core.training.runs import run_distillation, run_teacher_training
from actdistill_ros.core.training.stages import StaleRunError

from core_helpers import TINY


def _distill_config(device: str = "cpu") -> DistillConfig:
    return DistillConfig(graph=GraphConfig(graph_dim=32, semantic_dim=32, top_k=8),
                         loss=LossConfig(keep_ratio=0.45),
                         probe=OptimConfig(epochs=2, batch_size=32, lr=2e-3),
                         student=OptimConfig(epochs=6, batch_size=32, lr=5e-4), device=device)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("pipeline")
    make_dataset(160, steps=6, image_size=TINY.image_size, seed=0).save(out / "data")
    teacher_dir = run_teacher_training(out / "data", out, TeacherTrainConfig(
        model=TINY, optim=OptimConfig(epochs=10, batch_size=32, lr=2e-3), device="cpu"))
    result = run_distillation(out / "data", teacher_dir, out, _distill_config())
    return out, teacher_dir, result


def test_teacher_learns_the_instruction_conditioned_task(distilled):
    out, _, _ = distilled
    held_out = json.loads((out / "runs" / "teacher_done.json").read_text())["held_out"]["action_mse"]
    assert held_out < 0.8, "normalised MSE of 1.0 is predicting the mean; the teacher must beat it clearly"


def test_student_skips_layers_and_stays_close_to_teacher(distilled):
    _, _, result = distilled
    m = result.metrics
    assert m["executed_layer_fraction"] <= 0.6
    assert m["action_error_ratio"] <= 1.5, m


def test_exported_student_runs_through_the_policy_api(distilled):
    _, _, result = distilled
    policy = RoutedPolicy.load(result.student_dir, device="cpu")
    out = policy.act(np.zeros((32, 32, 3), np.uint8), "move to the red cube")
    assert out.actions.shape == (TINY.chunk_size, 7) and np.isfinite(out.actions).all()
    assert out.layers_executed < out.layers_total
    assert out.flops_ratio < 1.0


def test_rerun_reuses_finished_stages_only_with_the_same_settings(distilled):
    out, teacher_dir, result = distilled
    before = (out / "runs" / "student_metrics.jsonl").read_text()
    same = run_distillation(out / "data", teacher_dir, out, _distill_config())
    assert (out / "runs" / "student_metrics.jsonl").read_text() == before
    assert same.metrics["executed_layer_fraction"] == pytest.approx(result.metrics["executed_layer_fraction"])
    # what this test used to accept (other settings, finished stages silently reused) is now refused
    with pytest.raises(StaleRunError, match=r"config\.graph\.top_k 8 -> 4.*--restart"):
        run_distillation(out / "data", teacher_dir, out, DistillConfig(
            graph=GraphConfig(graph_dim=32, semantic_dim=32, top_k=4), probe=OptimConfig(epochs=2),
            student=OptimConfig(epochs=6), device="cpu"))
    assert (out / "runs" / "student_metrics.jsonl").read_text() == before, "nothing was touched"
