"""OpenVLA's action representation: discrete action tokens and dataset statistics.

Facts (OpenVLA, Kim et al. 2024, and its released checkpoints): each action dimension is
clipped to [-1, 1] and discretised into 256 uniform bins (edges ``linspace(-1, 1, 256)``, so 255
bin centres are decodable); bin ``b`` (1..256, ``digitize`` of the value) is written as token id
``vocab_size - b``, i.e. the last 256 ids of the tokenizer's base vocabulary (32000 for Llama 2,
not the 32064 rows of the padded embedding). One action = 7 tokens (x, y, z, roll, pitch, yaw,
gripper), decoded greedily. Normalised actions are de-normalised per dimension with the 1st/99th
percentiles of the training dataset chosen by ``unnorm_key``: ``0.5 (a + 1) (q99 - q01) + q01``
where the statistics' ``mask`` is true; masked-out dimensions (the gripper) pass through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.model.teacher import ActionNormalizer
from .errors import HFTeacherError

N_BINS = 256
ACTION_DIM = 7


class ActionTokenizer(nn.Module):
    """Continuous actions in [-1, 1] <-> the last ``N_BINS`` ids of a ``vocab_size`` vocabulary."""

    def __init__(self, vocab_size: int, n_bins: int = N_BINS) -> None:
        super().__init__()
        if vocab_size <= n_bins:
            raise HFTeacherError(f"a vocabulary of {vocab_size} ids has no room for {n_bins} action tokens")
        self.vocab_size, self.n_bins = int(vocab_size), int(n_bins)
        # numpy's linspace, bit for bit: torch.linspace rounds some edges differently
        edges = torch.from_numpy(np.linspace(-1.0, 1.0, n_bins))
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("centers", ((edges[:-1] + edges[1:]) / 2), persistent=False)

    @property
    def first_id(self) -> int:
        """Lowest action token id (the action ids are ``first_id .. vocab_size - 1``)."""
        return self.vocab_size - self.n_bins

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised actions [..., D] -> token ids [..., D] (int64)."""
        clipped = actions.double().clamp(-1.0, 1.0)
        bins = torch.bucketize(clipped, self.edges.to(clipped.device), right=True)  # == numpy digitize: 1..n_bins
        return (self.vocab_size - bins).long()

    def decode(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids [..., D] -> normalised actions [..., D] (bin centres, float32). Ids outside the action
        range clip to the nearest end bin, as OpenVLA does."""
        index = (self.vocab_size - token_ids.long() - 1).clamp(0, self.n_bins - 2)
        return self.centers.to(index.device)[index].float()

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, n_bins={self.n_bins}, ids={self.first_id}..{self.vocab_size - 1}"


def action_vocab_size(tokenizer: Any, config: Any) -> int:
    """The vocabulary the action ids count back from: OpenVLA's ``text_config.vocab_size - pad_to_multiple_of``
    when the config has it, else the tokenizer's base vocabulary (without added tokens)."""
    pad = getattr(config, "pad_to_multiple_of", None)
    text_config = getattr(config, "text_config", None)
    text_vocab = getattr(text_config, "vocab_size", None) if text_config is not None else None
    if pad and text_vocab:
        return int(text_vocab) - int(pad)
    return int(tokenizer.vocab_size)


def load_norm_stats(model_dir: str | Path, config: dict | None = None) -> dict[str, dict]:
    """All dataset statistics of a checkpoint: ``norm_stats`` in config.json, then ``dataset_statistics.json``
    (what fine-tuned OpenVLA checkpoints ship) on top."""
    model_dir = Path(model_dir)
    if config is None:
        config = json.loads((model_dir / "config.json").read_text())
    stats = dict(config.get("norm_stats") or {})
    extra = model_dir / "dataset_statistics.json"
    if extra.is_file():
        try:
            stats.update(json.loads(extra.read_text()))
        except ValueError as exc:
            raise HFTeacherError(f"{extra}: invalid JSON ({exc})") from exc
    return stats


def select_action_stats(stats: dict[str, dict], unnorm_key: str, where: str) -> tuple[str, dict]:
    """The ``action`` statistics of ``unnorm_key`` ('' = the only dataset there is)."""
    if not stats:
        raise HFTeacherError(
            f"{where}: no dataset statistics (norm_stats in config.json or dataset_statistics.json); "
            "the action_tokens head needs them to de-normalise actions"
        )
    if not unnorm_key:
        if len(stats) != 1:
            raise HFTeacherError(
                f"{where}: the checkpoint has statistics for {len(stats)} datasets; set "
                f"hf_teacher.unnorm_key to one of: {', '.join(sorted(stats))}"
            )
        unnorm_key = next(iter(stats))
    if unnorm_key not in stats:
        raise HFTeacherError(
            f"{where}: unnorm_key {unnorm_key!r} not in the checkpoint's statistics; "
            f"available: {', '.join(sorted(stats))}"
        )
    action = stats[unnorm_key].get("action") if isinstance(stats[unnorm_key], dict) else None
    if not isinstance(action, dict) or "q01" not in action or "q99" not in action:
        raise HFTeacherError(f"{where}: statistics {unnorm_key!r} have no action q01/q99")
    return unnorm_key, action


def normalizer_from_stats(action: dict, action_dim: int = ACTION_DIM) -> ActionNormalizer:
    """An :class:`ActionNormalizer` computing OpenVLA's de-normalisation exactly (it is affine per dimension:
    mean = (q99 + q01) / 2, std = (q99 - q01) / 2 where masked; identity where not)."""
    q01 = np.asarray(action["q01"], np.float64)
    q99 = np.asarray(action["q99"], np.float64)
    mask = np.asarray(action.get("mask", np.ones_like(q01, dtype=bool)), bool)
    if not (q01.shape == q99.shape == mask.shape == (action_dim,)):
        raise HFTeacherError(
            f"action statistics have {q01.shape[0] if q01.ndim else 0} dimensions, expected "
            f"{action_dim} (q01 {list(q01.shape)}, q99 {list(q99.shape)}, mask {list(mask.shape)})"
        )
    if not (np.isfinite(q01).all() and np.isfinite(q99).all()) or (q99 < q01).any():
        raise HFTeacherError("action statistics: q01/q99 must be finite with q99 >= q01")
    normalizer = ActionNormalizer(action_dim)
    with torch.no_grad():
        normalizer.mean.copy_(torch.from_numpy(np.where(mask, (q99 + q01) / 2, 0.0)))
        normalizer.std.copy_(torch.from_numpy(np.where(mask, np.maximum((q99 - q01) / 2, 1e-8), 1.0)))
    return normalizer
