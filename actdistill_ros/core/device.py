"""Device and dtype selection shared by training, benchmarks and the policy node."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU. 'cuda[:N]' without CUDA falls back to CPU with
    a warning (a robot should still move, slower); anything else is an error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from exc
        if not torch.cuda.is_available():
            log.warning("device %s requested but CUDA is not available: falling back to CPU", name)
            return torch.device("cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 on CUDA (fp16 where bf16 is unsupported), float32 on CPU."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: use auto, float32, float16 or bfloat16")
    dtype = DTYPES[name]
    if dtype != torch.float32 and device.type != "cuda":
        raise ValueError(f"dtype {name} is only supported on CUDA; use float32 on {device.type}")
    return dtype
