"""``ingest``: bags -> aligned ``EpisodeDataset`` on disk + ``ingest_summary.json``.

Each bag is read in two passes: the first reads every small topic and only the header stamps
of images (straight from the serialized bytes), the alignment then decides which images the
ticks use, and the second pass decodes just those. Memory stays at the size of the output,
not of the recording, and a 30 Hz camera under a 10 Hz control grid decodes a third of it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.data.dataset import DatasetError, Episode, EpisodeDataset
from .actions import GRIPPER_TYPES, SOURCE_TYPES, action_values, gripper_value, invalid_reason
from .align import Alignment, Streams, align_streams
from .bag_images import IMAGE_TYPES, decode_image, resize_rgb
from .config import IngestConfig, IngestError
from .reader import (
    OpenBag,
    bag_fingerprint,
    find_bags,
    header_stamp_peeker,
    message_stamp,
    open_bag,
    sort_by_stamp,
)
from .summary import STAMP_POLICY, SUMMARY_FILE, aggregate, topic_stats, write_summary

INGEST_VERSION = 1  # bump when the output for the same input changes (invalidates caches)


@dataclass
class IngestProgress:
    """Reported to the progress callback: which bag, which stage, how far."""

    bag: str
    bag_index: int
    num_bags: int
    stage: str  # "scan" | "decode" | "done" | "skipped" | "cached"
    done: int = 0
    total: int = 0


ProgressCallback = Callable[[IngestProgress], None]


@dataclass
class IngestResult:
    dataset_dir: Path
    summary: dict[str, Any]
    cache_hit: bool = False

    @property
    def summary_path(self) -> Path:
        return self.dataset_dir / SUMMARY_FILE


@dataclass
class _BagOutput:
    episodes: list[Episode] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    dropped_short: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _stream_ranges(info: dict[str, Any]) -> str:
    """Each stream's time range and clock: why ticks never formed is usually visible here (e.g. an
    instruction without a header, stamped on receipt, against images stamped by the camera)."""
    parts, sources = [], set()
    for topic, t in info.get("topics", {}).items():
        if t.get("first_ns") is None:
            parts.append(f"{topic}: no usable message")
            continue
        sources.add(t["stamp_source"])
        parts.append(f"{topic}: {t['first_ns'] * 1e-9:.3f}..{t['last_ns'] * 1e-9:.3f} s ({t['stamp_source']} time)")
    note = "; header and receive times mixed: ranges may never overlap" if {"header", "receive"} <= sources else ""
    return "; ".join(parts) + note


# ----------------------------------------------------------------------------- one bag


class _Series:
    """Accumulates one topic's messages during the scan."""

    def __init__(self, msgtype: str) -> None:
        self.msgtype = msgtype
        self.stamps: list[int] = []
        self.values: list[Any] = []
        self.raw = 0
        self.from_header = 0
        self.dropped: Counter = Counter()

    def add(self, stamp: int, value: Any, from_header: bool) -> None:
        self.stamps.append(stamp)
        self.values.append(value)
        self.from_header += int(from_header)

    def finish(self) -> tuple[np.ndarray, np.ndarray, int]:
        stamps, order, late = sort_by_stamp(self.stamps)
        self.sorted_stamps = stamps
        self.late = late
        return stamps, order, late

    def stats(self) -> dict[str, Any]:
        return topic_stats(
            self.msgtype, self.sorted_stamps, self.raw, self.from_header, self.dropped, self.late
        )


def _require_nonempty(bag: OpenBag, topic: str, series: _Series, what: str) -> None:
    if not series.stamps:
        reasons = ", ".join(f"{n} {r}" for r, n in series.dropped.items()) or "no messages"
        raise IngestError(
            f"bag {bag.path}, topic {topic}: no usable {what} messages ({series.raw} read; {reasons})"
        )


def _scan(bag: OpenBag, config: IngestConfig, fixed_instruction: str | None):
    """Pass 1: stamps of images; stamps and values of actions, instructions, gripper."""
    use_header = config.use_header_stamps
    img_type = bag.require(config.image_topic, IMAGE_TYPES, "image")
    act_type = bag.require(config.action_topic, SOURCE_TYPES[config.action_source], "action")
    series: dict[str, _Series] = {
        config.image_topic: _Series(img_type),
        config.action_topic: _Series(act_type),
    }
    if config.instruction_topic:
        series[config.instruction_topic] = _Series(
            bag.require(config.instruction_topic, ("std_msgs/msg/String",), "instruction")
        )
    if config.gripper_topic:
        series[config.gripper_topic] = _Series(bag.require(config.gripper_topic, GRIPPER_TYPES, "gripper"))

    images = series[config.image_topic]
    peek = header_stamp_peeker(bag, bag.topics[config.image_topic].msgtype) if use_header else None
    for _topic, recv, raw, msgtype in bag.messages([config.image_topic]):
        images.raw += 1
        if peek is not None:
            stamp = peek(raw)
            from_header = stamp > 0
            images.add(stamp if from_header else recv, None, from_header)
        else:
            stamp, from_header = message_stamp(bag.deserialize(raw, msgtype), recv, use_header)
            images.add(stamp, None, from_header)

    lo, hi = config.gripper_open_closed
    others = [t for t in series if t != config.image_topic]
    for topic, recv, raw, msgtype in bag.messages(others):
        s = series[topic]
        s.raw += 1
        msg = bag.deserialize(raw, msgtype)
        stamp, from_header = message_stamp(msg, recv, use_header)
        if topic == config.action_topic:
            values = action_values(config.action_source, msg)
            reason = invalid_reason(config.action_source, values)
            if reason:
                s.dropped[reason] += 1
                continue
            s.add(stamp, values, from_header)
        elif topic == config.instruction_topic:
            text = str(msg.data).strip()  # type: ignore[attr-defined]
            if not text:
                s.dropped["empty_instruction"] += 1
                continue
            s.add(stamp, text, from_header)
        else:
            value = gripper_value(msg, config.gripper_joint)
            if value is None:
                s.dropped["joint_not_found"] += 1
                continue
            if not np.isfinite(value):
                s.dropped["non_finite"] += 1
                continue
            s.add(stamp, float(np.clip((value - lo) / (hi - lo), 0.0, 1.0)), from_header)

    _require_nonempty(bag, config.image_topic, images, "image")
    _require_nonempty(bag, config.action_topic, series[config.action_topic], "action")
    if config.instruction_topic:
        _require_nonempty(bag, config.instruction_topic, series[config.instruction_topic], "instruction")
    if config.gripper_topic:
        _require_nonempty(bag, config.gripper_topic, series[config.gripper_topic], "gripper")

    img_stamps, img_order, _ = images.finish()
    act = series[config.action_topic]
    act_stamps, act_order, _ = act.finish()
    streams = Streams(
        image_stamps=img_stamps,
        action_stamps=act_stamps,
        action_values=np.asarray(act.values, dtype=np.float64)[act_order],
        fixed_instruction=fixed_instruction,
    )
    if config.instruction_topic:
        ins = series[config.instruction_topic]
        streams.instruction_stamps, order, _ = ins.finish()
        streams.instruction_texts = [ins.values[i] for i in order]
    if config.gripper_topic:
        grip = series[config.gripper_topic]
        streams.gripper_stamps, order, _ = grip.finish()
        streams.gripper_values = np.asarray(grip.values, dtype=np.float64)[order]
    return streams, img_order, series


def _decode(
    bag: OpenBag, config: IngestConfig, wanted: np.ndarray, report: Callable[[int, int], None]
) -> dict[int, np.ndarray]:
    """Pass 2: decode the image messages whose arrival index is in ``wanted``."""
    wanted_set = {int(i) for i in wanted}
    out: dict[int, np.ndarray] = {}
    if not wanted_set:
        return out
    last = max(wanted_set)
    for k, (topic, _recv, raw, msgtype) in enumerate(bag.messages([config.image_topic])):
        if k in wanted_set:
            msg = bag.deserialize(raw, msgtype)
            rgb = decode_image(msg, topic=topic, bag=str(bag.path))
            out[k] = resize_rgb(rgb, config.image_size)
            if len(out) % 50 == 0:
                report(len(out), len(wanted_set))
        if k >= last:
            break
    if len(out) != len(wanted_set):
        raise IngestError(
            f"bag {bag.path}, topic {config.image_topic}: second read returned {len(out)} of "
            f"{len(wanted_set)} images (bag changed while reading?)"
        )
    return out


def _ingest_bag(path: Path, config: IngestConfig, progress: Callable[[str, int, int], None]) -> _BagOutput:
    fixed = config.instruction_for(path)
    if config.instruction is not None and fixed is None:
        raise IngestError(
            f"bag {path}: no entry in the instruction mapping (keys: {sorted(config.instruction)})"
        )
    bag = open_bag(path)
    try:
        try:
            progress("scan", 0, 0)
            streams, img_order, series = _scan(bag, config, fixed)
            alignment: Alignment = align_streams(streams, config, source_name=str(path))
            used = (
                np.unique(np.concatenate([s.image_index for s in alignment.segments]))
                if alignment.segments
                else np.zeros(0, dtype=np.int64)
            )
            decoded = _decode(bag, config, img_order[used], lambda d, t: progress("decode", d, t))
        except IngestError:
            raise
        except Exception as exc:  # a truncated storage file fails mid-read with sqlite3/mcap errors
            raise IngestError(f"bag {path}: read failed ({type(exc).__name__}: {exc})") from exc
    finally:
        bag.close()

    out = _BagOutput(dropped_short=alignment.dropped_short)
    # a damaged file can end a read early without an error: compare with the bag's own counts
    out.warnings = [
        f"bag {path}: read {s.raw} of the {bag.topics[t].count} messages its index lists on {t} "
        f"(damaged or truncated file)"
        for t, s in series.items() if t in bag.topics and s.raw < bag.topics[t].count
    ]
    for i, seg in enumerate(alignment.segments):
        images = np.stack([decoded[int(img_order[j])] for j in seg.image_index])
        out.episodes.append(
            Episode(
                images=images,
                actions=seg.actions,
                instruction=seg.instruction,
                timestamps_ns=seg.ticks_ns,
                source=f"{path.name}#{i}",
            )
        )
    out.info = {
        "topics": {t: s.stats() for t, s in series.items()},
        "first_tick_ns": alignment.first_tick_ns,
        "ticks": alignment.ticks_total,
        "ticks_dropped_gap": alignment.ticks_dropped_gap,
        "episodes": len(out.episodes),
        "steps": sum(len(e) for e in out.episodes),
        "dropped_short_episodes": len(alignment.dropped_short),
        "images_decoded": len(decoded),
        "warnings": out.warnings,
    }
    return out


# ----------------------------------------------------------------------------- cache


def cache_key(config: IngestConfig, bags: list[Path]) -> str:
    """Hash of the config (minus cache_dir) and each bag's file names, sizes and mtimes."""
    cfg = config.to_dict()
    cfg.pop("cache_dir", None)
    payload = {
        "version": INGEST_VERSION,
        "config": cfg,
        "bags": {str(b): bag_fingerprint(b) for b in bags},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _copy_dataset(src: Path, dst: Path) -> None:
    """Copy the files a dataset index lists, the summary, and the index last (as save() does)."""
    dst.mkdir(parents=True, exist_ok=True)
    index = json.loads((src / "dataset.json").read_text())
    for name in [e["file"] for e in index.get("episodes", [])] + [SUMMARY_FILE]:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    shutil.copy2(src / "dataset.json", dst / "dataset.json")


def _try_cache(cache_entry: Path, output_dir: Path) -> dict[str, Any] | None:
    if not (cache_entry / "dataset.json").is_file() or not (cache_entry / SUMMARY_FILE).is_file():
        return None
    try:
        EpisodeDataset.load(cache_entry)  # validates the cached files before trusting them
        summary = json.loads((cache_entry / SUMMARY_FILE).read_text())
    except (DatasetError, OSError, ValueError):
        return None
    if cache_entry.resolve() != output_dir.resolve():
        _copy_dataset(cache_entry, output_dir)
    return summary


# ----------------------------------------------------------------------------- public


def ingest(
    config: IngestConfig,
    output_dir: str | Path,
    *,
    progress: ProgressCallback | None = None,
    show_progress: bool = False,
) -> IngestResult:
    """Turn the configured bags into an EpisodeDataset in ``output_dir`` plus a summary.

    Broken bags (corrupt, truncated, missing a topic, bad encoding...) are skipped and listed
    in ``summary['skipped_bags']`` while others remain usable; IngestError is raised when no
    bag yields an episode, naming each bag's reason.
    """
    config.validate()
    output_dir = Path(output_dir)
    bags = find_bags(config.bag_paths)
    key = cache_key(config, bags)
    cache_entry = Path(config.cache_dir) / key if config.cache_dir is not None else None

    def emit(p: IngestProgress) -> None:
        if progress is not None:
            progress(p)

    if cache_entry is not None:
        summary = _try_cache(cache_entry, output_dir)
        if summary is not None:
            summary["cache"] = {"hit": True, "key": key, "dir": str(cache_entry)}
            write_summary(summary, output_dir)
            emit(IngestProgress("*", len(bags), len(bags), "cached", len(bags), len(bags)))
            return IngestResult(output_dir, summary, cache_hit=True)

    started = time.monotonic()
    collected = _ingest_bags(bags, config, emit, show_progress)
    if not collected.episodes:
        raise IngestError(_no_usable_data(collected, config))
    summary = _summary(collected, config, time.monotonic() - started)
    summary["cache"] = {"hit": False, "key": key, "dir": None if cache_entry is None else str(cache_entry)}
    meta = {"source": "rosbag", "control_rate_hz": config.control_rate_hz, "action_source": config.action_source,
            "ingest_summary": SUMMARY_FILE}
    EpisodeDataset(collected.episodes, meta=meta).save(output_dir)
    write_summary(summary, output_dir)
    if cache_entry is not None:
        _store_cache(output_dir, cache_entry)
    return IngestResult(output_dir, summary, cache_hit=False)


@dataclass
class _Collected:
    """What the bags gave, over all of them."""

    episodes: list[Episode] = field(default_factory=list)
    per_bag: dict[str, dict[str, Any]] = field(default_factory=dict)  # bag -> its info (bags read)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"bag", "reason"} of the bags not read
    warnings: list[str] = field(default_factory=list)
    dropped_short: list[dict] = field(default_factory=list)

    def add(self, bag: str, result: _BagOutput) -> None:
        self.per_bag[bag] = result.info
        self.warnings.extend(result.warnings)
        self.episodes.extend(result.episodes)
        self.dropped_short.extend(result.dropped_short)
        if not result.episodes:
            self.per_bag[bag]["note"] = "no episode long enough"


def _ingest_bags(bags: list[Path], config: IngestConfig, emit: ProgressCallback, show_progress: bool) -> _Collected:
    """Each bag in turn: one that can not be read is skipped with its reason, the others still count."""
    collected = _Collected()
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(bags), desc="ingest", unit="bag")
    for i, bag in enumerate(bags):

        def report(stage: str, done: int, total: int, _bag: Path = bag, _i: int = i) -> None:
            emit(IngestProgress(str(_bag), _i, len(bags), stage, done, total))

        try:
            result = _ingest_bag(bag, config, report)
        except IngestError as exc:
            collected.skipped.append({"bag": str(bag), "reason": str(exc)})
            report("skipped", 0, 0)
        else:
            collected.add(str(bag), result)
            report("done", 1, 1)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return collected


def _no_usable_data(collected: _Collected, config: IngestConfig) -> str:
    """Why no bag gave an episode, bag by bag: the skipped ones' errors, the others' tick counts and
    stream ranges (where a run too short or a clock mismatch shows)."""
    reasons = [s["reason"] for s in collected.skipped]
    reasons += [
        f"bag {b}: no episode of >= {config.min_episode_steps} steps "
        f"({info['ticks']} ticks, {info['ticks_dropped_gap']} in gaps, "
        f"{info['dropped_short_episodes']} short runs; {_stream_ranges(info)})"
        for b, info in collected.per_bag.items()
    ]
    return "no usable data in any bag:\n  " + "\n  ".join(reasons)


def _summary(collected: _Collected, config: IngestConfig, seconds: float) -> dict[str, Any]:
    """``ingest_summary.json`` (less the cache entry): what was used, skipped and dropped, and why."""
    per_bag, episodes = collected.per_bag, collected.episodes
    return {
        "bags_used": [b for b, info in per_bag.items() if info["episodes"]],
        "bags_without_episodes": [b for b, info in per_bag.items() if not info["episodes"]],
        "skipped_bags": collected.skipped,
        "warnings": collected.warnings,
        "episodes": len(episodes),
        "steps": sum(len(e) for e in episodes),
        "episode_details": [
            {
                "source": e.source,
                "instruction": e.instruction,
                "steps": len(e),
                "start_ns": int(e.timestamps_ns[0]),
                "end_ns": int(e.timestamps_ns[-1]),
            }
            for e in episodes
        ],
        **aggregate(per_bag),
        "dropped_short_episodes": collected.dropped_short,
        "per_bag": per_bag,
        "stamps": STAMP_POLICY,
        "config": config.to_dict(),
        "seconds": round(seconds, 3),
    }


def _store_cache(output_dir: Path, cache_entry: Path) -> None:
    """Copy the result into the cache via a temporary directory and a rename (no half entries)."""
    cache_entry.parent.mkdir(parents=True, exist_ok=True)
    if cache_entry.resolve() == output_dir.resolve():
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache_entry.name}.", dir=cache_entry.parent))
    _copy_dataset(output_dir, tmp)
    if cache_entry.exists():
        shutil.rmtree(cache_entry)
    tmp.rename(cache_entry)
