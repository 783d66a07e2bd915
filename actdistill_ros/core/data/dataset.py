"""On-disk episode dataset: the one format every producer (synthetic task, rosbag
ingestion, simulator recorder) writes and every trainer reads.

Layout of a dataset directory::

    dataset.json              index: format, version, image shape, action names, episodes
    episode_00000.npz         images uint8 [T,H,W,3] RGB, actions float32 [T,7],
                              timestamps_ns int64 [T], instruction (0-d unicode array)

``.npz`` files are read with ``allow_pickle=False``: a dataset from an untrusted source
can not execute code. Samples are identified by ``(episode index, step)``, flattened to a
stable integer id, so caches keyed by sample id survive shuffling.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic_files import write_json_atomic

FORMAT_NAME = "actdistill-episodes"
FORMAT_VERSION = 1
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
ACTION_DIM = len(ACTION_NAMES)


class DatasetError(ValueError):
    """A dataset on disk or in memory is malformed; the message names the problem."""


@dataclass
class Episode:
    """One demonstration: aligned images and end-effector actions under one instruction."""

    images: np.ndarray  # uint8 [T, H, W, 3], RGB
    actions: np.ndarray  # float32 [T, 7]
    instruction: str
    timestamps_ns: np.ndarray | None = None  # int64 [T]
    source: str = ""

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        if self.timestamps_ns is None:
            self.timestamps_ns = np.arange(len(self.images), dtype=np.int64)
        self.timestamps_ns = np.asarray(self.timestamps_ns, dtype=np.int64)
        self.validate()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def validate(self) -> None:
        where = f"episode {self.source or '<memory>'}"
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise DatasetError(
                f"{where}: images must be uint8 [T,H,W,3] RGB, got {self.images.dtype} "
                f"{list(self.images.shape)}"
            )
        if self.actions.ndim != 2 or self.actions.shape[1] != ACTION_DIM:
            raise DatasetError(
                f"{where}: actions must be [T,{ACTION_DIM}] ({', '.join(ACTION_NAMES)}), "
                f"got {list(self.actions.shape)}"
            )
        if len(self.actions) != len(self.images) or len(self.timestamps_ns) != len(self.images):
            raise DatasetError(
                f"{where}: length mismatch: {len(self.images)} images, {len(self.actions)} "
                f"actions, {len(self.timestamps_ns)} timestamps"
            )
        if len(self.images) == 0:
            raise DatasetError(f"{where}: has zero steps")
        if not np.isfinite(self.actions).all():
            bad = np.argwhere(~np.isfinite(self.actions))[0]
            raise DatasetError(f"{where}: non-finite action at step {bad[0]}, dim {ACTION_NAMES[bad[1]]}")
        if not self.instruction or not self.instruction.strip():
            raise DatasetError(f"{where}: empty instruction")
        if len(self.timestamps_ns) > 1 and np.any(np.diff(self.timestamps_ns) <= 0):
            raise DatasetError(f"{where}: timestamps are not strictly increasing")


@dataclass
class EpisodeDataset:
    """All episodes of a dataset held in memory (datasets here are small: demos at 10 Hz)."""

    episodes: list[Episode]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.episodes:
            raise DatasetError("dataset has zero episodes")
        shapes = {ep.images.shape[1:] for ep in self.episodes}
        if len(shapes) != 1:
            raise DatasetError(f"episodes have different image shapes: {sorted(shapes)}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.episodes[0].images.shape[1:])  # type: ignore[return-value]

    @property
    def num_steps(self) -> int:
        return sum(len(ep) for ep in self.episodes)

    def save(self, directory: str | Path) -> Path:
        """Write the dataset atomically enough: episodes first, the index last."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index = []
        for i, ep in enumerate(self.episodes):
            name = f"episode_{i:05d}.npz"
            np.savez(
                directory / name,
                images=ep.images,
                actions=ep.actions,
                timestamps_ns=ep.timestamps_ns,
                instruction=np.array(ep.instruction),
            )
            index.append({"file": name, "steps": len(ep), "instruction": ep.instruction, "source": ep.source})
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "image_shape": list(self.image_shape),
            "action_names": list(ACTION_NAMES),
            "num_episodes": len(self.episodes),
            "num_steps": self.num_steps,
            "episodes": index,
            **{k: v for k, v in self.meta.items() if k not in {"episodes", "format", "version"}},
        }
        write_json_atomic(directory / "dataset.json", meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EpisodeDataset:
        directory = Path(directory)
        index_path = directory / "dataset.json"
        if not index_path.is_file():
            raise DatasetError(f"{directory}: not a dataset (no dataset.json)")
        try:
            meta = json.loads(index_path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{index_path}: invalid JSON ({exc})") from exc
        if meta.get("format") != FORMAT_NAME:
            raise DatasetError(f"{index_path}: format {meta.get('format')!r}, expected {FORMAT_NAME!r}")
        if meta.get("version") != FORMAT_VERSION:
            raise DatasetError(f"{index_path}: unsupported version {meta.get('version')!r}")
        if meta.get("action_names", list(ACTION_NAMES)) != list(ACTION_NAMES):
            raise DatasetError(
                f"{index_path}: action names {meta.get('action_names')} != expected {list(ACTION_NAMES)}"
            )
        episodes = []
        for entry in meta.get("episodes", []):
            path = directory / entry["file"]
            try:
                with np.load(path, allow_pickle=False) as data:
                    episodes.append(
                        Episode(
                            images=data["images"],
                            actions=data["actions"],
                            instruction=str(data["instruction"]),
                            timestamps_ns=data["timestamps_ns"],
                            source=entry.get("source") or entry["file"],
                        )
                    )
            except (OSError, KeyError, ValueError) as exc:
                if isinstance(exc, DatasetError):
                    raise
                raise DatasetError(f"{path}: cannot read episode ({exc})") from exc
        if not episodes:
            raise DatasetError(f"{directory}: dataset has zero episodes")
        return cls(episodes=episodes, meta=meta)

    def split(self, held_out_fraction: float, seed: int = 0) -> tuple[EpisodeDataset, EpisodeDataset]:
        """Split by whole episodes (never leak steps of one episode into both sides)."""
        if not 0.0 < held_out_fraction < 1.0:
            raise DatasetError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
        if len(self.episodes) < 2:
            raise DatasetError("need at least 2 episodes to hold some out")
        order = np.random.default_rng(seed).permutation(len(self.episodes))
        n_val = min(len(order) - 1, max(1, math.ceil(held_out_fraction * len(order))))
        val = [self.episodes[i] for i in sorted(order[:n_val])]
        train = [self.episodes[i] for i in sorted(order[n_val:])]
        return EpisodeDataset(train, dict(self.meta)), EpisodeDataset(val, dict(self.meta))
