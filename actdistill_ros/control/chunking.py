"""Execute predicted action chunks one control step at a time.

The policy predicts ``chunk_size`` future actions per forward pass. The executor keeps a
step counter that advances by one on every :meth:`ChunkExecutor.next` (one call per
control tick). A chunk added with :meth:`ChunkExecutor.add` has its row 0 applied at
``start_step`` (default: the next step to execute, i.e. "re-plan from now on"), row ``i``
at ``start_step + i``.

* Plain execution: each step uses the most recently added chunk that covers it, so a new
  prediction replaces the rest of the old one.
* Temporal ensembling (ACT, Zhao et al. 2023): each step averages the rows of *all*
  chunks that cover it, with weights ``exp(-k * i)`` where ``i = 0`` is the oldest of
  those predictions (normalised to sum to 1). ``k > 0`` favours older predictions (smooth),
  ``k = 0`` is a plain mean, ``k < 0`` favours newer ones.

When no chunk covers the current step (none yet, or the newest one is used up),
``next()`` returns ``None`` and the caller must stop the robot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from actdistill_ros.control.safety import COMMAND_DIM


@dataclass(frozen=True)
class ChunkStep:
    """The action of one control step."""

    action: np.ndarray  # float64 [7]
    remaining: np.ndarray  # float64 [M, 7]: rows of the newest contributing chunk after this step
    stamp: Any  # stamp of the newest contributing chunk (what :meth:`ChunkExecutor.add` got)
    n_predictions: int  # number of chunks averaged (1 without ensembling)
    step: int  # the step index this action is for
    row: int  # row of the newest contributing chunk used for this step


@dataclass
class _Chunk:
    actions: np.ndarray
    start_step: int
    stamp: Any

    @property
    def end_step(self) -> int:  # exclusive
        return self.start_step + len(self.actions)

    def covers(self, step: int) -> bool:
        return self.start_step <= step < self.end_step


class ChunkExecutor:
    """Not thread-safe: the node serialises calls with a lock."""

    def __init__(self, temporal_ensemble: bool = False, ensemble_k: float = 0.01, max_chunks: int = 64):
        if not math.isfinite(ensemble_k):
            raise ValueError(f"ensemble_k must be finite, got {ensemble_k!r}")
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1, got {max_chunks}")
        self.temporal_ensemble = bool(temporal_ensemble)
        self.ensemble_k = float(ensemble_k)
        self.max_chunks = int(max_chunks)
        self._chunks: list[_Chunk] = []
        self._step = 0

    @property
    def step(self) -> int:
        """Index of the next step :meth:`next` will execute."""
        return self._step

    @property
    def n_chunks(self) -> int:
        return len(self._chunks)

    def reset(self) -> None:
        """Forget all chunks (the step counter keeps counting)."""
        self._chunks.clear()

    def add(self, actions: np.ndarray, stamp: Any = None, start_step: int | None = None) -> None:
        """Add a predicted chunk ``[N, 7]`` (``[7]`` is taken as ``N = 1``)."""
        arr = np.asarray(actions, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != COMMAND_DIM or arr.shape[0] == 0:
            raise ValueError(f"a chunk must be [N>=1, {COMMAND_DIM}], got shape {list(np.shape(actions))}")
        start = self._step if start_step is None else int(start_step)
        if not self.temporal_ensemble:
            # re-plan: the new chunk supersedes every older one from its start step on
            for c in self._chunks:
                if c.end_step > start:
                    c.actions = c.actions[: max(0, start - c.start_step)]
        self._chunks.append(_Chunk(arr.copy(), start, stamp))
        self._prune()

    def _prune(self) -> None:
        self._chunks = [c for c in self._chunks if c.end_step > self._step and len(c.actions) > 0]
        del self._chunks[: max(0, len(self._chunks) - self.max_chunks)]

    def peek(self) -> ChunkStep | None:
        """The action for the current step, without advancing."""
        step = self._step
        covering = [c for c in self._chunks if c.covers(step)]
        if not covering:
            return None
        newest = covering[-1]  # chunks are kept in insertion order
        row = step - newest.start_step
        if self.temporal_ensemble and len(covering) > 1:
            rows = np.stack([c.actions[step - c.start_step] for c in covering])  # oldest first
            weights = np.exp(-self.ensemble_k * np.arange(len(covering), dtype=np.float64))
            weights /= weights.sum()
            action = (weights[:, None] * rows).sum(axis=0)
        else:
            action = newest.actions[row].copy()
            covering = [newest]
        return ChunkStep(
            action=action,
            remaining=newest.actions[row + 1 :].copy(),
            stamp=newest.stamp,
            n_predictions=len(covering),
            step=step,
            row=row,
        )

    def next(self) -> ChunkStep | None:
        """The action for the current step; advances the step counter either way."""
        out = self.peek()
        self._step += 1
        self._prune()
        return out
