"""Export/load: bit-exact round trip, nothing training-only exported, clear errors."""

import inspect
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from actdistill_ros.core.model.checkpoint import (
    CheckpointError,
    load_student,
    load_teacher,
    save_student,
    save_teacher,
)
from actdistill_ros.core.policy import Policy, RoutedPolicy, TeacherPolicy, load_policy

from core_helpers import tiny_inputs, tiny_student, tiny_teacher


def test_teacher_round_trip_is_bit_exact(tmp_path):
    teacher = tiny_teacher(seed=5)
    teacher.normalizer.mean.fill_(0.1)
    save_teacher(teacher, tmp_path / "t")
    loaded = load_teacher(tmp_path / "t")
    for (k, a), (k2, b) in zip(teacher.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    inputs = tiny_inputs(teacher)
    with torch.no_grad():
        assert torch.equal(teacher(inputs), loaded(inputs))


def test_student_round_trip_and_export_holds_no_training_only_modules(tmp_path):
    student = tiny_student(gate_bias=[4.0, -4.0, 4.0, 4.0])
    student.set_budget(max_layers=2, threshold=0.6)
    save_student(student, tmp_path / "s")
    keys = set(load_file(str(tmp_path / "s" / "model.safetensors")))
    assert keys == set(student.state_dict())
    assert not any("graph" in k or "probe" in k or "heads." in k for k in keys)
    assert any(k.startswith("router.") for k in keys)
    loaded = load_student(tmp_path / "s")
    assert loaded.max_layers == 2 and loaded.threshold == 0.6
    inputs = tiny_inputs(student.backbone)
    a, b = student.forward_routed(inputs), loaded.forward_routed(inputs)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.executed, b.executed)


def _saved_student(tmp_path):
    path = save_student(tiny_student(), tmp_path / "s")
    return path, load_file(str(path / "model.safetensors"))


def test_missing_checkpoint_and_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_student(tmp_path / "nope")
    path, _ = _saved_student(tmp_path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_student(path)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    path, tensors = _saved_student(tmp_path)
    tensors.pop("router.gate_head.bias")
    tensors["probes.graphs.0.phi.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys \['router.gate_head.bias'\].*unexpected keys"):
        load_student(path)


def test_wrong_shape_is_named(tmp_path):
    path, tensors = _saved_student(tmp_path)
    tensors["router.gate_head.bias"] = torch.zeros(9)
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"'router.gate_head.bias' has shape \[9\]"):
        load_student(path)


def test_unknown_version_format_and_corrupt_weights(tmp_path):
    path, _ = _saved_student(tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(CheckpointError, match="unknown checkpoint version 99"):
        load_student(path)
    (path / "config.json").write_text(json.dumps({**config, "format": "actdistill-teacher"}))
    with pytest.raises(CheckpointError, match="expected 'actdistill-student'"):
        load_student(path)
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"\x80\x04not safetensors")  # a pickle header: never unpickled
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_student(path)


def test_policy_api_returns_physical_actions_and_costs(tmp_path):
    student = tiny_student(gate_bias=[4.0, -4.0, 4.0, -4.0])
    student.backbone.normalizer.std.fill_(2.0)
    save_student(student, tmp_path / "s")
    policy = RoutedPolicy.load(tmp_path / "s", device="cpu")
    assert policy.image_size == (32, 32) and policy.chunk_size == 2 and policy.layers_total == 4
    out = policy.act(np.zeros((48, 40, 3), np.uint8), "move to the red cube")  # resized
    assert out.actions.shape == (2, 7) and out.actions.dtype == np.float32
    assert out.layers_executed == 2 and out.layers_total == 4
    assert 0.3 < out.flops_ratio < 0.75
    with pytest.raises(ValueError, match="empty"):
        policy.act(np.zeros((32, 32, 3), np.uint8), "  ")
    with pytest.raises(ValueError, match="uint8"):
        policy.act(np.zeros((32, 32, 3), np.float32), "move")
    with pytest.raises(ValueError, match="unknown device"):
        RoutedPolicy.load(tmp_path / "s", device="tpu")
    with pytest.raises(ValueError, match="only supported on CUDA"):
        RoutedPolicy.load(tmp_path / "s", device="cpu", dtype="float16")


def test_both_checkpoint_kinds_run_behind_the_policy_protocol(tmp_path):
    save_student(tiny_student(), tmp_path / "s")
    save_teacher(tiny_teacher(), tmp_path / "t")
    student, teacher = load_policy(tmp_path / "s", device="cpu"), load_policy(tmp_path / "t", device="cpu")
    assert type(student) is RoutedPolicy and type(teacher) is TeacherPolicy
    members = [name for name in dir(Policy) if not name.startswith("_")]
    assert {"act", "warmup", "set_budget", "check_instruction", "image_size", "chunk_size"} <= set(members)
    for policy in (student, teacher):
        assert isinstance(policy, Policy)
        for name in members:  # same signatures as the protocol, not just the same names
            declared = getattr(Policy, name)
            if callable(declared):
                assert inspect.signature(getattr(type(policy), name)) == inspect.signature(declared), name
        out = policy.act(np.zeros((32, 32, 3), np.uint8), "move to the red cube")
        assert out.actions.shape == (policy.chunk_size, 7) and out.layers_total == policy.layers_total
