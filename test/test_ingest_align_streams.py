"""Alignment decisions on arrays, without bags: which ticks exist, which are dropped as gaps, which
image and action each tick gets, where episodes split (test_ingest_alignment.py checks the same
end to end, through real rosbag2 files)."""

from __future__ import annotations

import numpy as np
import pytest

from actdistill_ros.ingest.align import Streams, align_streams
from actdistill_ros.ingest.config import IngestConfig

MS = 1_000_000  # ns


def ms(*values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64) * MS


def every(step_ms: int, until_ms: int, start_ms: int = 0) -> np.ndarray:
    return np.arange(start_ms, until_ms + 1, step_ms, dtype=np.int64) * MS


def ee_rows(n: int, period_s: float = 0.1) -> np.ndarray:
    """EndEffectorAction values: dx = 0.001 * i, gripper 0.5, the sender's control period."""
    rows = np.zeros((n, 8))
    rows[:, 0] = 0.001 * np.arange(n)
    rows[:, 6] = 0.5
    rows[:, 7] = period_s
    return rows


def config(**overrides) -> IngestConfig:
    values = {"bags": "arrays_only", "action_source": "ee", "instruction": "x", "control_rate_hz": 10.0,
              "max_gap_s": 0.25, "min_episode_steps": 3}
    values.update(overrides)
    return IngestConfig(**values)


def test_ticks_take_the_latest_image_and_action_at_or_before_them():
    images = (np.arange(30) * 1e9 / 30).astype(np.int64)  # 30 Hz for a second
    actions = every(100, 900)
    streams = Streams(images, actions, ee_rows(len(actions), period_s=0.05), fixed_instruction="x")
    out = align_streams(streams, config())
    (seg,) = out.segments
    assert out.first_tick_ns == 0 and out.ticks_total == 10 and out.ticks_dropped_gap == 0
    np.testing.assert_array_equal(seg.ticks_ns, every(100, 900))  # up to the last action
    np.testing.assert_array_equal(seg.image_index, np.searchsorted(images, seg.ticks_ns, side="right") - 1)
    np.testing.assert_allclose(seg.actions[:, 0], 0.002 * np.arange(10), rtol=1e-6)  # 0.05 s steps rescaled to 0.1 s
    assert seg.actions.dtype == np.float32 and (seg.actions[:, 6] == 0.5).all() and seg.instruction == "x"


def test_a_gap_drops_its_ticks_and_a_short_run_is_dropped_and_reported():
    images = np.concatenate([every(100, 500), every(100, 2000, start_ms=1000)])  # nothing for 0.5 s
    actions = every(100, 2000)
    out = align_streams(Streams(images, actions, ee_rows(len(actions)), fixed_instruction="x"),
                        config(min_episode_steps=7), source_name="bag_a")
    assert out.ticks_total == 21 and out.ticks_dropped_gap == 4  # 600..900 ms: within the 500 ms gap
    (seg,) = out.segments
    np.testing.assert_array_equal(seg.ticks_ns, every(100, 2000, start_ms=1000))
    assert out.dropped_short == [{"bag": "bag_a", "instruction": "x", "steps": 6, "start_ns": 0,
                                  "reason": "6 steps < min_episode_steps 7"}]


@pytest.mark.parametrize(("split", "lengths"), [(False, [6, 10]), (True, [3, 3, 10])])
def test_a_new_instruction_starts_an_episode_a_republished_one_only_when_asked(split, lengths):
    frames = every(100, 1500)
    streams = Streams(frames, frames, ee_rows(len(frames)), instruction_stamps=ms(0, 300, 600),
                      instruction_texts=["a", "a", "b"])
    out = align_streams(streams, config(instruction=None, instruction_topic="/instruction",
                                        split_on_instruction_message=split))
    assert [len(s.ticks_ns) for s in out.segments] == lengths
    assert [s.instruction for s in out.segments] == ["a"] * (len(lengths) - 1) + ["b"]
    assert out.segments[-1].ticks_ns[0] == 600 * MS


def test_twist_is_integrated_over_the_tick_and_the_gripper_is_the_latest():
    actions = every(150, 900)  # 0, 150, ..., 900 ms
    velocities = np.zeros((len(actions), 6))
    velocities[0, 0] = 1.0  # 1 m/s for the first 150 ms
    streams = Streams(every(100, 900), actions, velocities, fixed_instruction="x",
                      gripper_stamps=ms(0, 250), gripper_values=np.array([0.2, 0.9]))
    out = align_streams(streams, config(action_source="twist"))
    (seg,) = out.segments
    np.testing.assert_array_equal(seg.ticks_ns, every(100, 800))  # the last tick's [t, t+dt) is covered
    np.testing.assert_allclose(seg.actions[:3, 0], [0.1, 0.05, 0.0], atol=1e-7)
    np.testing.assert_allclose(seg.actions[:, 6], [0.2, 0.2, 0.2] + [0.9] * 6)


def test_streams_that_never_overlap_give_no_ticks():
    out = align_streams(Streams(every(100, 500), every(100, 1500, start_ms=1000), ee_rows(6),
                                fixed_instruction="x"), config())
    assert out.segments == [] and out.ticks_total == 0 and out.first_tick_ns == 1000 * MS
