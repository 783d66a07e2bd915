"""transformers teachers through the whole method: teacher stage (new head fitted on the demos) ->
probe -> distill -> export -> load -> routed inference with fewer layers, per family; and the
distillation job with a model directory as `teacher` (the OpenVLA action-token path).

Tiny sizes: 4 episodes of 6 steps at 32 px, one epoch per stage, one torch thread."""

from __future__ import annotations

import json

import pytest
import torch

from actdistill_ros.core.config import DistillConfig, GraphConfig, OptimConfig, RouterConfig
from actdistill_ros.core.data.synthetic import make_dataset
from actdistill_ros.core.model.checkpoint import load_student, load_teacher, read_checkpoint_info
from actdistill_ros.core.model.flops import count_flops
from actdistill_ros.core.policy import RoutedPolicy
from actdistill_ros.core.training.runs import run_distillation
from actdistill_ros.core.training.stages import StaleRunError
from actdistill_ros.distill_job import config_from_mapping, run_distill_job
from actdistill_ros.teachers import HFTeacherOptions
from actdistill_ros.teachers.teacher_stage import prepare_hf_teacher

from hf_tiny_models import random_images, tiny_model_dir

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 copy= note from PaliGemma's processor

# family -> action head on top of it (core's heads are pluggable: each family tries another)
HEADS = {"llava": "regression", "idefics3": "tokens", "paligemma": "flow", "qwen2_vl": "regression"}
SMALL_HEAD = {"width": 16, "layers": 1, "heads": 2, "flow_steps": 2}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hf_data")
    return make_dataset(4, steps=6, image_size=32, seed=0).save(root / "data")


def _distill_config(**kw) -> DistillConfig:
    return DistillConfig(
        graph=GraphConfig(graph_dim=16, semantic_dim=16, top_k=4, gat_layers=1),
        router=RouterConfig(router_dim=8),
        probe=OptimConfig(epochs=1, batch_size=8),
        student=OptimConfig(epochs=1, batch_size=8),
        held_out_fraction=0.25,
        device="cpu",
        **kw,
    )


@pytest.mark.parametrize("family", list(HEADS))
def test_probe_distill_export_load_routed_inference(family, dataset, tmp_path):
    head = HEADS[family]
    options = HFTeacherOptions(
        head=head, chunk_size=2, head_epochs=1, head_config=SMALL_HEAD if head != "regression" else {}
    )
    teacher_dir, done = prepare_hf_teacher(
        dataset, tiny_model_dir(family), tmp_path, options, batch_size=8, held_out_fraction=0.25, device="cpu"
    )
    assert done and (tmp_path / "runs" / "teacher_done.json").is_file()
    stamp = (teacher_dir / "model.safetensors").stat().st_mtime_ns
    same = {"batch_size": 8, "held_out_fraction": 0.25, "device": "cpu"}
    assert prepare_hf_teacher(dataset, tiny_model_dir(family), tmp_path, options, **same) == (teacher_dir, True)
    with pytest.raises(StaleRunError, match=r"config\.batch_size 8 -> 32"):  # other settings: never reused
        prepare_hf_teacher(dataset, tiny_model_dir(family), tmp_path, options, held_out_fraction=0.25)
    assert (teacher_dir / "model.safetensors").stat().st_mtime_ns == stamp
    # only the router learns, so a student with every gate open must be exactly the teacher
    result = run_distillation(dataset, teacher_dir, tmp_path, _distill_config(train_backbone=False))
    assert "stopped" not in result.metrics

    # export: safetensors + JSON + the transformers model in hf/, nothing pickled
    student_dir = result.student_dir
    files = {p.relative_to(student_dir).as_posix() for p in student_dir.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "hf/config.json", "hf/model.safetensors"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".pth"))]
    info = read_checkpoint_info(student_dir)
    assert info["teacher"]["type"] == "hf_vlm" and info["teacher"]["family"] == family
    assert info["teacher"]["options"]["head"] == head

    teacher = load_teacher(teacher_dir)
    student = load_student(student_dir)
    inputs = teacher.prepare(random_images(2, seed=3), ["move to the red cube", "touch the blue one"])
    with torch.no_grad():
        student.router.gate_head.weight.zero_()
        student.router.gate_head.bias.fill_(10.0)
        expected = teacher(inputs)
        opened = student.forward_routed(inputs)
    assert opened.executed.all()
    torch.testing.assert_close(opened.actions, expected, rtol=0, atol=1e-5)

    # fewer layers: executed layers and FLOPs (counted by running) drop
    student.set_budget(max_layers=2)
    with torch.no_grad():
        assert student.forward_routed(inputs).executed.sum(1).tolist() == [2, 2]
    teacher_flops = count_flops(lambda: teacher(inputs))
    student_flops = count_flops(lambda: student.forward_routed(inputs))
    assert student_flops < 0.8 * teacher_flops

    # the deployable API loads the same directory
    policy = RoutedPolicy.load(student_dir, device="cpu")
    policy.set_budget(max_layers=1)  # the cap, and the one layer every sample keeps: exactly 1
    out = policy.act(random_images(1, seed=4)[0], "move to the red cube")
    assert out.actions.shape == (2, 7) and out.layers_executed == 1 and out.layers_total == 4
    assert 0 < out.flops_ratio < 1


def test_distill_job_takes_a_model_directory_as_teacher_openvla_action_tokens(dataset, tmp_path):
    """The job config's `teacher` is a model directory (auto-detected), the head chosen in `hf_teacher`:
    OpenVLA-style action tokens de-normalised with the checkpoint's statistics (nothing to fit)."""
    model_dir = tiny_model_dir("llava", openvla_stats=True)
    cfg = config_from_mapping(
        {
            "dataset": str(dataset),
            "output_dir": str(tmp_path / "out"),
            "teacher": str(model_dir),
            "device": "cpu",
            "hf_teacher": {
                "head": "action_tokens",
                "unnorm_key": "tiny_robot",
                "chunk_size": 1,
                "prompt": "{image}In: What action should the robot take to {instruction}?\nOut:",
            },
            "epochs": 1,
            "probe_epochs": 1,
            "batch_size": 8,
            "report_eval_samples": 4,
            "report_latency_iters": 1,
            "distill": {
                "held_out_fraction": 0.25,
                "graph": {"graph_dim": 16, "semantic_dim": 16, "gat_layers": 1},
                "router": {"router_dim": 8},
            },
        }
    )
    events = []
    result = run_distill_job(cfg, progress=events.append)
    assert result.finished
    assert ("teacher", "done") in {(e["stage"], e["state"]) for e in events}
    teacher_info = read_checkpoint_info(tmp_path / "out" / "teacher")
    assert teacher_info["teacher"]["source"]["path"] == str(model_dir.resolve())  # referenced, not copied
    assert not (tmp_path / "out" / "teacher" / "hf").exists()
    report = json.loads(result.report_json.read_text())
    assert 0 < report["flops_ratio"] <= 1.1 and report["teacher"]["flops"] > 0
    student = load_student(result.student_dir)
    assert student.backbone.cfg.head == "action_tokens"
    # the student de-normalises with the OpenVLA statistics it was built with
    assert torch.allclose(student.backbone.normalizer.std[:3].double(), torch.tensor([0.02, 0.04, 0.02]).double())
