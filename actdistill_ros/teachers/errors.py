"""Errors of the transformers-teacher adapter: each names the problem and what to do about it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..core.model.checkpoint import CheckpointError
from ..core.training.memory import TrainingOutOfMemoryError, out_of_memory_advice


class HFTeacherError(CheckpointError):
    """A transformers model directory cannot be used as a teacher (missing file, unknown
    architecture, processor/model mismatch, remote code not allowed...).

    A :class:`CheckpointError`, so callers that already report bad checkpoints report these too.
    """


OOM_ADVICE = (
    "bf16 weights (hf_teacher.dtype: bfloat16, on a GPU); for training also "
    + out_of_memory_advice(None)
    + "; or only the router learns (distill.train_backbone: false)"
)


class HFTeacherOutOfMemoryError(TrainingOutOfMemoryError):
    """Device memory ran out in a pass of a transformers teacher/student; the message says where and
    what to change (a ``torch.OutOfMemoryError``, which the training loop passes on unchanged)."""


@contextlib.contextmanager
def explain_oom(what: str) -> Iterator[None]:
    """Re-raise ``torch.OutOfMemoryError`` raised inside the block with :data:`OOM_ADVICE`.

    Still an ``OutOfMemoryError`` (callers that catch it keep working); raised once, not nested.
    """
    try:
        yield
    except HFTeacherOutOfMemoryError:
        raise
    except torch.OutOfMemoryError as exc:
        raise HFTeacherOutOfMemoryError(f"out of memory during {what} ({exc}). Try {OOM_ADVICE}") from exc
