"""Time alignment of one bag's streams onto a fixed control grid, and episode splitting.

Ticks run every 1/control_rate_hz from the first instant all required streams (images,
actions, instruction topic, gripper topic) have data, up to the last image and the last action
the tick needs. At each tick: the latest image at or before it, the action (see ``actions``),
the latest instruction and gripper at or before it.

A tick is dropped as a gap when a value it reads lies in a stretch of more than ``max_gap_s``
between two consecutive messages of its stream (offline, both neighbours are known, so a tick
just after the last message before a gap is dropped too, instead of repeating a stale image
or a stale motion command): the image at t; the action at t ('ee'), at t and t+dt ('pose'),
or anywhere in [t, t+dt) ('twist', whose held velocity is integrated over it).

Episodes are maximal runs of consecutive kept ticks under one instruction; runs shorter than
``min_episode_steps`` are dropped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .actions import ee_deltas, latest_index, pose_deltas, twist_deltas
from .config import IngestConfig


@dataclass
class Streams:
    """One bag's data, each stream sorted by stamp (int64 ns)."""

    image_stamps: np.ndarray
    action_stamps: np.ndarray
    action_values: np.ndarray
    instruction_stamps: np.ndarray | None = None  # None: fixed instruction
    instruction_texts: list[str] = field(default_factory=list)
    fixed_instruction: str | None = None
    gripper_stamps: np.ndarray | None = None
    gripper_values: np.ndarray | None = None  # already normalized to 0..1


@dataclass
class Segment:
    ticks_ns: np.ndarray  # int64 [T]
    image_index: np.ndarray  # int64 [T], into the sorted image stream
    actions: np.ndarray  # float32 [T,7]
    instruction: str


@dataclass
class Alignment:
    segments: list[Segment]
    ticks_total: int = 0
    ticks_dropped_gap: int = 0
    dropped_short: list[dict] = field(default_factory=list)
    first_tick_ns: int | None = None


def bracket_gap(stamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Length (ns) of the inter-message stretch each time falls in: 0 on a message, huge
    before the first or after the last message."""
    huge = np.iinfo(np.int64).max
    idx = latest_index(stamps, times)
    safe = np.clip(idx, 0, len(stamps) - 1)
    nxt = np.clip(idx + 1, 0, len(stamps) - 1)
    gap = np.where(idx + 1 < len(stamps), stamps[nxt] - stamps[safe], huge)
    gap = np.where(stamps[safe] == times, 0, gap)
    return np.where(idx >= 0, gap, huge)


def max_gap_over(stamps: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Longest inter-message stretch overlapping [start, stop), per interval."""
    worst = bracket_gap(stamps, start)
    gaps = np.diff(stamps)  # gaps[i] spans [stamps[i], stamps[i+1]]
    first = latest_index(stamps, start)
    last = np.searchsorted(stamps, stop, side="left") - 1  # last message before stop
    for n in np.flatnonzero(last > first):
        lo = max(int(first[n]), 0)
        hi = int(last[n])
        span = gaps[lo : min(hi + 1, len(gaps))]
        if hi >= len(gaps):  # the held value outlives the last message
            worst[n] = np.iinfo(np.int64).max
        elif span.size:
            worst[n] = max(int(worst[n]), int(span.max()))
    return worst


def align_streams(streams: Streams, config: IngestConfig, source_name: str = "") -> Alignment:
    dt_ns = config.period_ns
    span = 0 if config.action_source == "ee" else dt_ns
    firsts = [streams.image_stamps[0], streams.action_stamps[0]]
    if streams.instruction_stamps is not None:
        firsts.append(streams.instruction_stamps[0])
    if streams.gripper_stamps is not None:
        firsts.append(streams.gripper_stamps[0])
    t0 = int(max(firsts))
    t_end = min(int(streams.image_stamps[-1]), int(streams.action_stamps[-1]) - span)
    if t_end < t0:
        return Alignment(segments=[], first_tick_ns=t0)
    ticks = t0 + dt_ns * np.arange((t_end - t0) // dt_ns + 1, dtype=np.int64)

    gap_ns = int(round(config.max_gap_s * 1e9))
    ok = bracket_gap(streams.image_stamps, ticks) <= gap_ns
    if config.action_source == "ee":
        ok &= bracket_gap(streams.action_stamps, ticks) <= gap_ns
    elif config.action_source == "pose":
        ok &= bracket_gap(streams.action_stamps, ticks) <= gap_ns
        ok &= bracket_gap(streams.action_stamps, ticks + dt_ns) <= gap_ns
    else:
        ok &= max_gap_over(streams.action_stamps, ticks, ticks + dt_ns) <= gap_ns

    actions = np.zeros((len(ticks), 7), dtype=np.float64)
    if config.action_source == "ee":
        actions[:] = ee_deltas(streams.action_stamps, streams.action_values, ticks, config.period_s)
    else:
        fn = twist_deltas if config.action_source == "twist" else pose_deltas
        actions[:, :6] = fn(streams.action_stamps, streams.action_values, ticks, dt_ns)
        if streams.gripper_stamps is not None and streams.gripper_values is not None:
            actions[:, 6] = streams.gripper_values[latest_index(streams.gripper_stamps, ticks)]

    if streams.instruction_stamps is not None:
        instr_idx = latest_index(streams.instruction_stamps, ticks)
        texts = streams.instruction_texts
        if not config.split_on_instruction_message:
            # Collapse republished identical texts into the first message of their run.
            run_start = np.zeros(len(texts), dtype=np.int64)
            for i in range(1, len(texts)):
                run_start[i] = run_start[i - 1] if texts[i] == texts[i - 1] else i
            instr_idx = run_start[instr_idx]
    else:
        instr_idx = np.zeros(len(ticks), dtype=np.int64)
        texts = [streams.fixed_instruction or ""]

    image_index = latest_index(streams.image_stamps, ticks)
    result = Alignment(segments=[], ticks_total=len(ticks), first_tick_ns=t0)
    result.ticks_dropped_gap = int(np.count_nonzero(~ok))
    # run boundaries: a dropped tick, or a change of instruction
    start = None
    for i in range(len(ticks) + 1):
        boundary = i == len(ticks) or not ok[i] or (start is not None and instr_idx[i] != instr_idx[start])
        if start is not None and boundary:
            sl = slice(start, i)
            text = texts[int(instr_idx[start])]
            n = i - start
            if n >= config.min_episode_steps:
                result.segments.append(
                    Segment(ticks[sl].copy(), image_index[sl].copy(), actions[sl].astype(np.float32), text)
                )
            else:
                result.dropped_short.append(
                    {
                        "bag": source_name,
                        "instruction": text,
                        "steps": n,
                        "start_ns": int(ticks[start]),
                        "reason": f"{n} steps < min_episode_steps {config.min_episode_steps}",
                    }
                )
            start = None
        if i < len(ticks) and ok[i] and start is None:
            start = i
    return result
