"""Loading a transformers model directory as an :class:`~.hf_teacher.HFVLATeacher`."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .errors import HFTeacherError, explain_oom
from .hf_teacher import HFVLATeacher
from .model_dir import inspect_model_dir
from .openvla import load_norm_stats, normalizer_from_stats, select_action_stats
from .options import HFTeacherOptions
from .processors import load_processor


def source_fingerprint(path: Path) -> str:
    """Identity of a model directory without reading its weights: config.json + weight file names and sizes."""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:24]


def _dtype_arg(name: str) -> Any:
    return (
        "auto"
        if name == "auto"
        else {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    )


def _load_model(path: Path, options: HFTeacherOptions, remote: bool, config: dict) -> torch.nn.Module:
    import transformers

    kwargs = {"dtype": _dtype_arg(options.dtype), "trust_remote_code": options.trust_remote_code}
    try:
        if remote:
            from transformers.dynamic_module_utils import get_class_from_dynamic_module

            auto_map = config.get("auto_map") or {}
            for key in ("AutoModelForVision2Seq", "AutoModelForImageTextToText", "AutoModelForCausalLM"):
                if key in auto_map:
                    cls = get_class_from_dynamic_module(auto_map[key], str(path))
                    return cls.from_pretrained(path, **kwargs).eval()
            raise HFTeacherError(
                f"{path}: config.json auto_map names no model class "
                "(AutoModelForVision2Seq / AutoModelForImageTextToText)"
            )
        return transformers.AutoModelForImageTextToText.from_pretrained(path, **kwargs).eval()
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        if isinstance(exc, HFTeacherError):
            raise
        if (bad := unreadable_weight_file(path)) is not None:
            raise HFTeacherError(bad) from exc
        raise HFTeacherError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from exc


def unreadable_weight_file(path: Path) -> str | None:
    """'<file>: unreadable safetensors file (why)' for the first weight file whose header does not
    parse or whose tensors it does not cover (truncated, overwritten); None when all read.
    safetensors stores no checksum: bytes changed inside tensor data load as they are."""
    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError, ValueError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return f"{file}: unreadable safetensors file ({why})"
    return None


def load_hf_teacher(path: str | Path, options: HFTeacherOptions | None = None) -> HFVLATeacher:
    """A transformers model directory -> :class:`HFVLATeacher` (weights as stored, action head fresh;
    the ``action_tokens`` head gets the checkpoint's de-normalisation statistics)."""
    options = options or HFTeacherOptions()
    options.validate()
    info = inspect_model_dir(path, options.trust_remote_code)
    processor = load_processor(info.path, options.trust_remote_code)
    with explain_oom(f"loading {info.path}"):
        model = _load_model(info.path, options, info.remote_code, info.config)
    source = {
        "path": str(info.path.resolve()),
        "model_type": info.model_type,
        "fingerprint": source_fingerprint(info.path),
    }
    teacher = HFVLATeacher(model, processor, info.family, options, source=source)
    if options.head == "action_tokens":
        key, stats = select_action_stats(load_norm_stats(info.path, info.config), options.unnorm_key, str(info.path))
        teacher.normalizer = normalizer_from_stats(stats)
        teacher.cfg = replace(teacher.cfg, unnorm_key=key)
    return teacher.to(teacher.dtype).eval()
