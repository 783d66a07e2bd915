"""Bad transformers teachers fail early with a message that names the problem: a missing file, an
architecture the adapter does not know, a processor that does not match the model, remote code that
is not allowed, device memory running out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from actdistill_ros.core.config import OptimConfig
from actdistill_ros.core.training.stages import TensorData, train_teacher
from actdistill_ros.core.typed_config import ConfigError
from actdistill_ros.distill_job import DistillJobError, check_teacher, config_from_mapping
from actdistill_ros.teachers import (
    HFTeacherError,
    HFTeacherOptions,
    HFTeacherOutOfMemoryError,
    inspect_model_dir,
    load_hf_teacher,
)

from hf_tiny_models import random_images, tiny_model_dir

REMOTE_AUTO_MAP = {
    "AutoConfig": "configuration_prismatic.OpenVLAConfig",
    "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction",
}


@pytest.fixture
def llava_copy(tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model_dir("llava"), tmp_path / "llava"))


def _edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_missing_files_are_named(llava_copy, tmp_path):
    with pytest.raises(HFTeacherError, match="model directory not found"):
        inspect_model_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HFTeacherError, match="missing config.json"):
        inspect_model_dir(tmp_path / "empty")
    (llava_copy / "model.safetensors").rename(llava_copy / "weights.keep")
    with pytest.raises(HFTeacherError, match=r"missing model.safetensors \(or model.safetensors.index.json"):
        inspect_model_dir(llava_copy)
    (llava_copy / "pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(HFTeacherError, match="pytorch_model.bin: pickled weights are not loaded"):
        inspect_model_dir(llava_copy)
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (llava_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    (llava_copy / "weights.keep").rename(llava_copy / "model-00001-of-00002.safetensors")
    with pytest.raises(HFTeacherError, match="missing weight shard.*model-00002-of-00002.safetensors"):
        inspect_model_dir(llava_copy)


def test_missing_tokenizer_or_processor_files_are_named(llava_copy):
    (llava_copy / "processor_config.json").unlink()
    with pytest.raises(HFTeacherError, match="missing the image processor config.*preprocessor_config.json"):
        inspect_model_dir(llava_copy)
    (llava_copy / "tokenizer.json").unlink()
    with pytest.raises(HFTeacherError, match="missing tokenizer files.*tokenizer.json"):
        inspect_model_dir(llava_copy)


def test_unknown_architecture_lists_the_supported_ones_and_how_to_add_one(llava_copy):
    _edit_config(llava_copy, model_type="blip-2", architectures=["Blip2ForConditionalGeneration"])
    with pytest.raises(HFTeacherError) as info:
        inspect_model_dir(llava_copy)
    message = str(info.value)
    assert "'blip-2'" in message and "Blip2ForConditionalGeneration" in message
    for family in ("llava", "idefics3", "smolvlm", "paligemma", "qwen2_vl", "qwen2_5_vl", "openvla"):
        assert family in message
    assert "add a FamilySpec to actdistill_ros/teachers/families.py" in message


def test_remote_code_needs_explicit_trust(llava_copy):
    _edit_config(llava_copy, model_type="openvla", auto_map=REMOTE_AUTO_MAP)
    with pytest.raises(
        HFTeacherError, match="configuration_prismatic.py, modeling_prismatic.py.*hf_teacher.trust_remote_code: true"
    ):
        inspect_model_dir(llava_copy)
    with pytest.raises(HFTeacherError, match="missing configuration_prismatic.py, modeling_prismatic.py"):
        inspect_model_dir(llava_copy, trust_remote_code=True)
    for name in ("configuration_prismatic.py", "modeling_prismatic.py"):
        (llava_copy / name).write_text("# model code\n")
    assert inspect_model_dir(llava_copy, trust_remote_code=True).remote_code


def test_processor_that_does_not_match_the_model(llava_copy, tmp_path):
    _edit_config(llava_copy, image_token_index=5)
    with pytest.raises(
        HFTeacherError,
        match="processor does not match the model: the processor writes image token id 320 .* expects image_token_id 5",
    ):
        load_hf_teacher(llava_copy)
    # a tokenizer from another (larger) vocabulary than the model's embedding
    other = Path(shutil.copytree(tiny_model_dir("llava"), tmp_path / "other"))
    tokenizer_file = other / "tokenizer.json"
    data = json.loads(tokenizer_file.read_text())
    start = max(t["id"] for t in data["added_tokens"]) + 1
    data["added_tokens"] += [
        {
            "id": start + i,
            "content": f"<extra_{i}>",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i in range(40)
    ]
    tokenizer_file.write_text(json.dumps(data))
    with pytest.raises(HFTeacherError, match="the tokenizer has 361 tokens but the model's embedding has 329 rows"):
        load_hf_teacher(other)


def test_out_of_memory_is_reraised_with_advice(tmp_path):
    teacher = load_hf_teacher(tiny_model_dir("qwen2_vl"), HFTeacherOptions(chunk_size=1))
    inputs = teacher.prepare(random_images(2), ["move to the red cube", "go"])

    def out_of_memory(module, args, kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    handle = teacher.layers[2].register_forward_pre_hook(out_of_memory, with_kwargs=True)
    try:
        with pytest.raises(HFTeacherOutOfMemoryError) as info:
            teacher(inputs)
        message = str(info.value)
        assert "decoder layer 2" in message and "Tried to allocate 20.00 GiB" in message
        assert "LoRA" in message and "smaller batch" in message and "bf16" in message
        assert isinstance(info.value, torch.OutOfMemoryError)
        # in a training step the loop passes the explained error on
        data = TensorData(inputs, torch.zeros(2, 1, 7), torch.arange(2))
        with pytest.raises(HFTeacherOutOfMemoryError, match="LoRA"):
            train_teacher(teacher, data, OptimConfig(epochs=1, batch_size=2), tmp_path)
    finally:
        handle.remove()


def test_distill_job_config_checks_the_teacher_directory(llava_copy, tmp_path):
    base = {"dataset": str(tmp_path), "output_dir": str(tmp_path / "out")}
    with pytest.raises(ConfigError, match="hf_teacher.\\*: only used when `teacher` is a transformers model"):
        config_from_mapping({**base, "hf_teacher": {"head": "flow"}})
    with pytest.raises(ConfigError, match="unknown config key.*hf_teacher.heads"):
        config_from_mapping({**base, "teacher": str(llava_copy), "hf_teacher": {"heads": "flow"}})
    with pytest.raises(ConfigError, match="hf_teacher.head: 'mlp'"):
        config_from_mapping({**base, "teacher": str(llava_copy), "hf_teacher.head": "mlp"})
    cfg = config_from_mapping({**base, "teacher": str(llava_copy), "hf_teacher.head": "action_tokens"})
    assert check_teacher(cfg) == (llava_copy, 32)  # detected from config.json; image size from the processor
    (llava_copy / "tokenizer.json").unlink()
    with pytest.raises(DistillJobError, match="missing tokenizer files"):
        check_teacher(cfg)


def test_out_of_memory_in_the_job_is_a_job_error_with_advice(tmp_path, monkeypatch):
    from actdistill_ros.core.data.synthetic import make_dataset
    from actdistill_ros.distill_job import run_distill_job
    from actdistill_ros.teachers.hf_teacher import HFVLATeacher

    dataset = make_dataset(3, steps=4, image_size=32, seed=0).save(tmp_path / "data")

    def out_of_memory(self, index, hidden, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")

    monkeypatch.setattr(HFVLATeacher, "run_layer", out_of_memory)
    cfg = config_from_mapping(
        {
            "dataset": str(dataset),
            "output_dir": str(tmp_path / "out"),
            "device": "cpu",
            "teacher": str(tiny_model_dir("idefics3")),
            "batch_size": 4,
            "distill": {"held_out_fraction": 0.34},
        }
    )
    with pytest.raises(DistillJobError, match="^teacher: out of memory .*LoRA.*smaller batch"):
        run_distill_job(cfg)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_model_file_is_one_checkpoint_error_naming_it(llava_copy):
    _truncate(llava_copy / "model.safetensors")
    with pytest.raises(HFTeacherError, match=r"^\S+/llava/model\.safetensors: unreadable safetensors file \(") as err:
        load_hf_teacher(llava_copy)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("damaged", ["hf/model.safetensors", "model.safetensors"])
def test_a_truncated_student_file_is_one_checkpoint_error_naming_it(llava_copy, tmp_path, damaged):
    """An exported transformers student: its own weights and the VLM's in ``hf/``."""
    from actdistill_ros.core.config import RouterConfig
    from actdistill_ros.core.model.checkpoint import CheckpointError, load_student, save_student
    from actdistill_ros.core.model.student import RoutedStudent

    student = RoutedStudent.from_teacher(load_hf_teacher(llava_copy), RouterConfig(router_dim=8))
    directory = save_student(student, tmp_path / "student")
    assert load_student(directory) is not None  # intact, it loads
    _truncate(directory / damaged)
    with pytest.raises(CheckpointError, match=rf"student/{damaged}: unreadable safetensors file \(") as err:
        load_student(directory)
    assert "\n" not in str(err.value)
