"""Checks of a transformers model directory before anything heavy is loaded.

A missing file, an unknown architecture or remote code that is not allowed is reported here,
naming the file or the option, instead of as a stack trace from deep inside transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import HFTeacherError
from .families import HOW_TO_ADD, FamilySpec, describe_supported, family_for

CONFIG_FILE = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
IMAGE_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


@dataclass
class ModelDirInfo:
    path: Path
    config: dict
    family: FamilySpec
    model_type: str
    remote_code: bool  # the config needs Python code from the directory (auto_map, unknown model_type)


def is_hf_model_dir(path: str | Path) -> bool:
    """A directory whose config.json is a transformers config (``model_type``), not an actdistill checkpoint."""
    config_path = Path(path) / CONFIG_FILE
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, OSError):
        return False
    return isinstance(config, dict) and "format" not in config and "model_type" in config


def _known_to_transformers(model_type: str) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


def _check_weights(path: Path) -> None:
    if (path / SAFETENSORS).is_file():
        return
    index_path = path / SAFETENSORS_INDEX
    if index_path.is_file():
        try:
            shards = sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise HFTeacherError(f"{index_path}: not a safetensors index ({exc})") from exc
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise HFTeacherError(
                f"{path}: missing weight shard(s) {', '.join(missing)} listed in {SAFETENSORS_INDEX} "
                "(an interrupted download?)"
            )
        return
    pickled = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
    hint = (
        f" It holds {', '.join(pickled)}: pickled weights are not loaded (unpickling runs code); convert them "
        "to safetensors (transformers: model.save_pretrained(dir, safe_serialization=True))."
        if pickled
        else ""
    )
    raise HFTeacherError(f"{path}: missing {SAFETENSORS} (or {SAFETENSORS_INDEX} with its shards).{hint}")


def _remote_code_files(config: dict) -> list[str]:
    auto_map = config.get("auto_map") or {}
    refs = [v for v in auto_map.values() for v in (v if isinstance(v, list) else [v]) if isinstance(v, str)]
    # "configuration_prismatic.OpenVLAConfig" or "repo--configuration_prismatic.OpenVLAConfig"
    return sorted({ref.split("--")[-1].rsplit(".", 1)[0] + ".py" for ref in refs})


def inspect_model_dir(path: str | Path, trust_remote_code: bool = False) -> ModelDirInfo:
    """Check ``path`` holds a usable transformers VLM; raise :class:`HFTeacherError` naming the problem."""
    path = Path(path).expanduser()
    if not path.exists():
        raise HFTeacherError(f"model directory not found: {path}")
    if not path.is_dir():
        raise HFTeacherError(
            f"{path}: not a directory (a transformers model directory holds {CONFIG_FILE}, "
            f"the weights and the processor files)"
        )
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise HFTeacherError(f"{path}: missing {CONFIG_FILE} (not a transformers model directory)")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as exc:
        raise HFTeacherError(f"{config_path}: invalid JSON ({exc})") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not model_type:
        raise HFTeacherError(f"{config_path}: no model_type (not a transformers config)")
    family = family_for(model_type)
    if family is None:
        archs = ", ".join(config.get("architectures") or []) or "?"
        raise HFTeacherError(
            f"{path}: model_type {model_type!r} (architectures {archs}) is not a VLM family this adapter knows. "
            f"Supported: {describe_supported()}. {HOW_TO_ADD}"
        )
    remote = bool(config.get("auto_map")) and (family.needs_remote_code or not _known_to_transformers(model_type))
    if family.needs_remote_code and not config.get("auto_map") and not _known_to_transformers(model_type):
        raise HFTeacherError(
            f"{config_path}: model_type {model_type!r} needs its modeling code but the config has no auto_map naming it"
        )
    if remote:
        files = _remote_code_files(config)
        if not trust_remote_code:
            raise HFTeacherError(
                f"{path}: model_type {model_type!r} is implemented by Python code shipped in the model directory "
                f"({', '.join(files) or 'auto_map'}), which runs when the model loads. Set "
                "hf_teacher.trust_remote_code: true only if you trust that code."
            )
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            raise HFTeacherError(f"{path}: missing {', '.join(missing)} (the model code named in config.json auto_map)")
    _check_weights(path)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise HFTeacherError(f"{path}: missing tokenizer files (none of {', '.join(TOKENIZER_FILES)})")
    if not any((path / f).is_file() for f in IMAGE_PROCESSOR_FILES):
        raise HFTeacherError(f"{path}: missing the image processor config (none of {', '.join(IMAGE_PROCESSOR_FILES)})")
    return ModelDirInfo(path, config, family, model_type, remote)
