"""Checkpoints of transformers-VLM teachers and their routed students (safetensors + JSON, never pickle).

Student directory (self-contained, movable)::

    config.json        actdistill student format; ``teacher`` = {type: hf_vlm, family, options, source}
    model.safetensors  everything that is not the transformers model: router, action head, normaliser
    hf/                the distilled transformers model as ``save_pretrained`` writes it (config.json,
                       safetensors weights), plus the processor/tokenizer files and any model code
                       (*.py) copied from the source model directory

Loading reads ``hf/`` through the same ``from_pretrained`` path as a downloaded model, then the
rest from ``model.safetensors`` (strict: every key present, no extra key, same shapes).

Teacher directory: the same without the router and without ``hf/``: the teacher is the frozen
source model, referenced by path and checked against a fingerprint (config + weight file sizes)
when loaded, so a 7B teacher is not copied next to its source.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..core.model.checkpoint import (
    CONFIG_FILE,
    FORMAT_VERSION,
    STUDENT_FORMAT,
    TEACHER_FORMAT,
    WEIGHTS_FILE,
    CheckpointError,
    load_weights,
    routed_student,
)
from ..core.model.student import RoutedStudent
from ..core.typed_config import ConfigError, from_dict, to_dict
from .errors import HFTeacherError
from .hf_teacher import HFVLATeacher
from .loading import load_hf_teacher, source_fingerprint
from .options import HFTeacherOptions

HF_DIR = "hf"
MODEL_PREFIX = "model."  # the transformers model inside HFVLATeacher's state dict
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
_WRITTEN_BY_SAVE_PRETRAINED = {"config.json", "generation_config.json", "model.safetensors.index.json"}
_MAX_SIDE_FILE = 64 << 20


def _non_model_state(module: nn.Module, skip: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items() if not k.startswith(skip)}


def _write_json(directory: Path, config: dict) -> None:
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def _copy_side_files(source: Path, target: Path) -> None:
    """Processor, tokenizer, statistics and model-code files of ``source`` (everything but the weights and
    what ``save_pretrained`` writes itself)."""
    for file in sorted(source.iterdir()):
        if (
            file.is_file()
            and not file.name.endswith(_WEIGHT_SUFFIXES)
            and file.name not in _WRITTEN_BY_SAVE_PRETRAINED
            and file.stat().st_size <= _MAX_SIDE_FILE
        ):
            shutil.copy2(file, target / file.name)


def _options(spec: dict, where: Path) -> HFTeacherOptions:
    try:
        return from_dict(HFTeacherOptions, spec.get("options", {}))
    except ConfigError as exc:
        raise CheckpointError(f"{where}: bad hf_vlm teacher options: {exc}") from exc


def _backbone_dir(spec: dict, directory: Path) -> Path:
    inside = directory / HF_DIR
    if inside.is_dir():
        return inside
    source = spec.get("source") or {}
    path = Path(source.get("path", ""))
    if not source.get("path") or not path.is_dir():
        raise CheckpointError(
            f"{directory}: the teacher's transformers model {str(path) or '?'} is not there (the "
            "teacher checkpoint references its source model directory; restore it or re-run)"
        )
    if source.get("fingerprint") and source_fingerprint(path) != source["fingerprint"]:
        raise CheckpointError(
            f"{directory}: the source model {path} changed since this teacher checkpoint was made "
            "(config.json or weight files differ); re-run the teacher stage"
        )
    return path


def _build(spec: dict, directory: Path) -> HFVLATeacher:
    options = _options(spec, directory)
    model_dir = _backbone_dir(spec, directory)
    try:
        teacher = load_hf_teacher(model_dir, options)
    except HFTeacherError as exc:
        raise CheckpointError(f"{directory}: {exc}") from exc
    teacher.source = dict(spec.get("source") or {})
    teacher.source["loaded_from"] = str(model_dir.resolve())
    return teacher


def save_teacher(teacher: HFVLATeacher, directory: Path, extra: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format": TEACHER_FORMAT,
        "version": FORMAT_VERSION,
        "teacher": teacher.checkpoint_spec(),
        **(extra or {}),
    }
    save_file(
        _non_model_state(teacher, MODEL_PREFIX), str(directory / WEIGHTS_FILE), metadata={"format": TEACHER_FORMAT}
    )
    _write_json(directory, config)
    return directory


def load_teacher(directory: Path, config: dict) -> HFVLATeacher:
    teacher = _build(config["teacher"], directory)
    load_weights(directory, teacher, MODEL_PREFIX)
    return teacher.eval()


def save_student(student: RoutedStudent, directory: Path, extra: dict | None = None) -> Path:
    backbone: HFVLATeacher = student.backbone
    source = Path(backbone.source.get("loaded_from") or backbone.source.get("path", ""))
    if not source.is_dir():
        raise CheckpointError(f"cannot export: the source model directory {source} (processor files) is gone")
    directory.mkdir(parents=True, exist_ok=True)
    hf_dir = directory / HF_DIR
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    backbone.model.save_pretrained(hf_dir)
    _copy_side_files(source, hf_dir)
    spec = backbone.checkpoint_spec()
    spec["source"] = {k: v for k, v in spec["source"].items() if k != "loaded_from"}
    config = {
        "format": STUDENT_FORMAT,
        "version": FORMAT_VERSION,
        "teacher": spec,
        "backbone_dir": HF_DIR,
        "router": to_dict(student.router.cfg),
        "inference": {"threshold": student.threshold, "max_layers": student.max_layers},
        **(extra or {}),
    }
    save_file(
        _non_model_state(student, "backbone." + MODEL_PREFIX),
        str(directory / WEIGHTS_FILE),
        metadata={"format": STUDENT_FORMAT},
    )
    _write_json(directory, config)
    return directory


def load_student(directory: Path, config: dict) -> RoutedStudent:
    if not (directory / HF_DIR).is_dir():
        raise CheckpointError(f"{directory}: missing {HF_DIR}/ (the student's transformers model)")
    return routed_student(_build(config["teacher"], directory), config, directory, "backbone." + MODEL_PREFIX)
