"""Deployable checkpoints: ``config.json`` + ``model.safetensors``. Loading never unpickles.

A teacher checkpoint holds the TinyVLA (with its action normalisation statistics); a
student checkpoint holds backbone + router + action head only (no graph modules or
per-layer probe heads: those are training-only). Every mismatch (missing file, wrong
format or version, missing/unexpected key, wrong shape) is a :class:`CheckpointError`
that names the problem.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import RouterConfig, TinyVLAConfig
from ..typed_config import ConfigError, from_dict, to_dict
from .student import RoutedStudent
from .teacher import VLATeacher
from .tiny_vla import TinyVLA

FORMAT_VERSION = 1
TEACHER_FORMAT = "actdistill-teacher"
STUDENT_FORMAT = "actdistill-student"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TEACHER_TYPES = {"tiny_vla": (TinyVLA, TinyVLAConfig)}
# Teacher types whose checkpoints a plug-in module writes and reads (imported only when used):
# it provides save_teacher(teacher, dir, extra), load_teacher(dir, config), save_student(student,
# dir, extra) and load_student(dir, config). A teacher names its type in ``checkpoint_type``.
EXTERNAL_TEACHER_TYPES = {"hf_vlm": "actdistill_ros.teachers.export"}


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed or does not match the model it claims to be."""


def package_assets() -> Path:
    return Path(__file__).resolve().parents[2] / "assets"  # actdistill_ros/assets


def default_student_path() -> Path:
    """The small student checkpoint shipped inside the package (the embedded default)."""
    return package_assets() / "student_default"


def default_teacher_path() -> Path:
    return package_assets() / "teacher_default"


def _write(directory: Path, config: dict, module: nn.Module) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": config["format"]})
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def _read_config(directory: Path, expected_format: str) -> dict:
    if not directory.exists():
        raise CheckpointError(f"checkpoint not found: {directory}")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint must be a directory holding {CONFIG_FILE} and {WEIGHTS_FILE}: {directory}")
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{directory}: missing {CONFIG_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_path}: invalid JSON ({exc})") from exc
    if config.get("format") != expected_format:
        raise CheckpointError(f"{config_path}: format is {config.get('format')!r}, expected {expected_format!r}")
    if config.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: unknown checkpoint version {config.get('version')!r} "
            f"(this actdistill_ros reads version {FORMAT_VERSION})"
        )
    return config


# Tensors added to the format after version 1 was published, with the value that reproduces what
# older checkpoints did: a file without them loads as before.
LEGACY_DEFAULTS = {"router.logit_offset": lambda: torch.zeros(())}  # the gate threshold offset (router.py)


def load_weights(directory: Path, module: nn.Module, skip_prefix: str = "") -> None:
    """``model.safetensors`` into ``module``, strictly: every key, shape and value checked
    (keys of ``LEGACY_DEFAULTS`` that an older file lacks take their old meaning).

    ``skip_prefix``: parameters under it are neither expected nor loaded here (the transformers
    adapter keeps the VLM's own weights in ``hf/`` and loads them with ``from_pretrained``)."""
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{directory}: missing {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({exc})") from exc
    expected = {k: v for k, v in module.state_dict().items() if not (skip_prefix and k.startswith(skip_prefix))}
    for key, default in LEGACY_DEFAULTS.items():
        if key in expected and key not in tensors:
            tensors[key] = default()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(f"{weights_path}: " + "; ".join(parts))
    for key, value in tensors.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{weights_path}: key {key!r} has shape {list(value.shape)}, "
                f"the config implies {list(expected[key].shape)}"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{weights_path}: key {key!r} holds non-finite values")
    result = module.load_state_dict(tensors, strict=not skip_prefix)
    assert not result.unexpected_keys and all(k.startswith(skip_prefix) for k in result.missing_keys)


def _external(kind: object):
    """The plug-in module of an external teacher type (None for the built-in types)."""
    name = EXTERNAL_TEACHER_TYPES.get(kind) if isinstance(kind, str) else None
    return importlib.import_module(name) if name else None


def _external_of(config: dict):
    spec = config.get("teacher")
    return _external(spec.get("type")) if isinstance(spec, dict) else None


def _teacher_config(teacher: VLATeacher) -> dict:
    for name, (cls, _cfg_cls) in TEACHER_TYPES.items():
        if isinstance(teacher, cls):
            return {"type": name, "model": to_dict(teacher.cfg)}
    raise CheckpointError(f"cannot export teacher of type {type(teacher).__name__}")


def _build_teacher(spec: dict, where: Path) -> VLATeacher:
    kind = spec.get("type")
    if kind not in TEACHER_TYPES:
        raise CheckpointError(f"{where}: unknown teacher type {kind!r}; known: {sorted(TEACHER_TYPES)}")
    cls, cfg_cls = TEACHER_TYPES[kind]
    try:
        return cls(from_dict(cfg_cls, spec.get("model", {})))
    except ConfigError as exc:
        raise CheckpointError(f"{where}: bad model config: {exc}") from exc


def save_teacher(teacher: VLATeacher, directory: str | Path, extra: dict | None = None) -> Path:
    if (plugin := _external(getattr(teacher, "checkpoint_type", None))) is not None:
        return plugin.save_teacher(teacher, Path(directory), extra)
    config = {"format": TEACHER_FORMAT, "version": FORMAT_VERSION, "teacher": _teacher_config(teacher),
              **(extra or {})}
    return _write(Path(directory), config, teacher)


def load_teacher(directory: str | Path) -> VLATeacher:
    directory = Path(directory)
    config = _read_config(directory, TEACHER_FORMAT)
    if (plugin := _external_of(config)) is not None:
        return plugin.load_teacher(directory, config)
    teacher = _build_teacher(config.get("teacher", {}), directory)
    load_weights(directory, teacher)
    return teacher.eval()


def save_student(student: RoutedStudent, directory: str | Path, extra: dict | None = None) -> Path:
    """Export the deployable student (backbone + router + action head, nothing training-only)."""
    if (plugin := _external(getattr(student.backbone, "checkpoint_type", None))) is not None:
        return plugin.save_student(student, Path(directory), extra)
    config = {
        "format": STUDENT_FORMAT,
        "version": FORMAT_VERSION,
        "teacher": _teacher_config(student.backbone),
        "router": to_dict(student.router.cfg),
        "inference": {"threshold": student.threshold, "max_layers": student.max_layers},
        **(extra or {}),
    }
    return _write(Path(directory), config, student)


def load_student(directory: str | Path) -> RoutedStudent:
    directory = Path(directory)
    config = _read_config(directory, STUDENT_FORMAT)
    if (plugin := _external_of(config)) is not None:
        return plugin.load_student(directory, config)
    return routed_student(_build_teacher(config.get("teacher", {}), directory), config, directory)


def routed_student(backbone: VLATeacher, config: dict, directory: Path, skip_prefix: str = "") -> RoutedStudent:
    """A student checkpoint's router and inference settings (``config``) on ``backbone``, its
    weights loaded from ``directory`` (``skip_prefix``: as :func:`load_weights`); both checkpoint
    formats (ours, the transformers adapter's) end here."""
    try:
        router_cfg = from_dict(RouterConfig, config.get("router", {}))
    except ConfigError as exc:
        raise CheckpointError(f"{directory}: bad router config: {exc}") from exc
    student = RoutedStudent(backbone, router_cfg)
    load_weights(directory, student, skip_prefix)
    inference = config.get("inference", {})
    try:
        student.set_budget(max_layers=inference.get("max_layers"), threshold=inference.get("threshold"))
    except ValueError as exc:
        raise CheckpointError(f"{directory}: bad inference settings: {exc}") from exc
    return student.eval()


def weights_sha256(directory: str | Path) -> str:
    """Content hash of a checkpoint's weights: provenance that holds on any machine (unlike a path).
    A transformers model directory without ``model.safetensors`` (sharded, or ``.bin``): the hash
    of all its weight files in name order, names included."""
    directory = Path(directory)
    if (directory / WEIGHTS_FILE).is_file():
        files, named = [directory / WEIGHTS_FILE], False
    else:
        files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
        named = True
        if not files:
            raise CheckpointError(f"{directory}: no weight files (*.safetensors, *.bin)")
    digest = hashlib.sha256()
    for path in files:
        if named:
            digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_checkpoint_info(directory: str | Path) -> dict:
    """The JSON config of a teacher or student checkpoint (no weights loaded)."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info
