"""Ingestion of real rosbag2 / ROS 1 files written with rosbags: exact alignment checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from actdistill_ros.core.data.dataset import EpisodeDataset
from actdistill_ros.ingest import IngestConfig, ingest

from demo_bags import DemoTopics, frame_of, scene_rgb, write_demo_bag

TOPICS = DemoTopics()
DT_NS = 100_000_000  # 10 Hz control


def make_config(bags, **kw) -> IngestConfig:
    base = dict(
        bags=bags,
        image_topic=TOPICS.image,
        action_topic=TOPICS.action,
        instruction_topic=TOPICS.instruction,
        control_rate_hz=10.0,
        image_size=(32, 40),
        max_gap_s=0.5,
        min_episode_steps=3,
    )
    base.update(kw)
    return IngestConfig(**base)


def run(tmp_path, config) -> EpisodeDataset:
    result = ingest(config, tmp_path / "out")
    assert (tmp_path / "out" / "ingest_summary.json").is_file()
    return EpisodeDataset.load(result.dataset_dir)


def expected_ticks(bag, extra_firsts=()) -> np.ndarray:
    firsts = [min(s for s, _, _ in bag.images), min(s for s, _, _ in bag.actions)]
    firsts += [min(s for s, _, _ in bag.instructions), *extra_firsts]
    return np.int64(max(firsts))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("image_format", ["rgb8", "bgr8", "mono8", "rgba8", "png"])
def test_images_align_exactly(tmp_path, storage, image_format):
    # images at 30 Hz, actions at 10 Hz: each tick takes the latest image at or before it
    bag = write_demo_bag(
        tmp_path / "bag",
        storage,
        num_frames=60,
        image_rate_hz=30.0,
        action_rate_hz=10.0,
        image_format=image_format,
    )
    ds = run(tmp_path, make_config(tmp_path / "bag"))
    assert len(ds.episodes) == 1
    ep = ds.episodes[0]
    t0 = expected_ticks(bag)
    np.testing.assert_array_equal(ep.timestamps_ns, t0 + DT_NS * np.arange(len(ep)))
    assert len(ep) == 20  # actions k=0..19 at 10 Hz end the grid
    for stamp, img in zip(ep.timestamps_ns, ep.images, strict=True):
        frame = bag.frame_at(int(stamp))
        want = scene_rgb(frame, (32, 40))
        if image_format == "mono8":
            want = np.repeat(want[..., :1], 3, axis=2)
        np.testing.assert_array_equal(img, want)
    assert ep.instruction == "pick up the red block"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_jpeg_within_tolerance_and_resize(tmp_path, storage):
    write_demo_bag(tmp_path / "bag", storage, num_frames=20, image_format="jpeg", image_size=(64, 80))
    ds = run(tmp_path, make_config(tmp_path / "bag", image_size=(32, 40)))
    ep = ds.episodes[0]
    assert ep.images.shape == (20, 32, 40, 3)
    for i, img in enumerate(ep.images):
        assert np.abs(img.astype(int) - scene_rgb(i, (32, 40))).max() <= 3
        assert frame_of(img) == i


def test_header_stamps_used_not_receive_time(tmp_path):
    # receive time lags by 40 ms: the timestamps must be the header stamps, on the 10 Hz grid
    bag = write_demo_bag(
        tmp_path / "bag", "mcap", num_frames=10, receive_latency_ns=40_000_000, instructions=None
    )
    ds = run(tmp_path, make_config(tmp_path / "bag", instruction_topic=None, instruction="wave"))
    ts = ds.episodes[0].timestamps_ns
    assert ts[0] == bag.start_ns
    assert [frame_of(im) for im in ds.episodes[0].images] == list(range(10))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_ee_actions_latest_and_rescaled(tmp_path, storage):
    # EndEffectorAction at 20 Hz (control_period 0.05 s) sampled at 10 Hz: deltas scaled x2
    bag = write_demo_bag(tmp_path / "bag", storage, num_frames=20, action_rate_hz=20.0, action_offset_s=0.013)
    ds = run(tmp_path, make_config(tmp_path / "bag"))
    ep = ds.episodes[0]
    stamps = np.array([s for s, _, _ in bag.actions])
    for t, act in zip(ep.timestamps_ns, ep.actions, strict=True):
        v = bag.actions[int(np.searchsorted(stamps, t, side="right") - 1)][2]
        np.testing.assert_allclose(act[:6], v[:6] * 2.0, rtol=1e-6, atol=1e-7)
        assert act[6] == pytest.approx(v[6], abs=1e-6)


def _held(bag, t_ns):
    stamps = np.array([s for s, _, _ in bag.actions])
    return bag.actions[int(np.searchsorted(stamps, t_ns, side="right") - 1)][2]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_twist_integrated_over_control_period(tmp_path, storage):
    # twists at 30 Hz offset by 13 ms, instruction at 21 ms: breakpoints fall inside the ticks
    bag = write_demo_bag(
        tmp_path / "bag",
        storage,
        num_frames=20,
        action_source="twist",
        action_rate_hz=30.0,
        action_offset_s=0.013,
        instructions=[(0.021, "push the cube")],
        gripper="float64",
    )
    ds = run(tmp_path, make_config(tmp_path / "bag", action_source="twist", gripper_topic=TOPICS.gripper))
    ep = ds.episodes[0]
    assert ep.timestamps_ns[0] == bag.start_ns + 21_000_000
    n_sub = 2000
    for t, act in zip(ep.timestamps_ns, ep.actions, strict=True):
        sub = t + (np.arange(n_sub) + 0.5) * DT_NS / n_sub
        want = sum(_held(bag, int(s))[:6] for s in sub) * (0.1 / n_sub)
        np.testing.assert_allclose(act[:6], want, atol=2e-5)
        g = [gv for gs, _, gv in bag.grippers if gs <= t][-1]
        assert act[6] == pytest.approx(g, abs=1e-6)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_pose_deltas_with_yaw(tmp_path, storage):
    bag = write_demo_bag(
        tmp_path / "bag",
        storage,
        num_frames=20,
        action_source="pose",
        action_rate_hz=30.0,
        gripper="joint_state",
    )
    ds = run(
        tmp_path,
        make_config(
            tmp_path / "bag", action_source="pose", gripper_topic=TOPICS.gripper, gripper_joint="finger_joint"
        ),
    )
    ep = ds.episodes[0]
    for t, act in zip(ep.timestamps_ns, ep.actions, strict=True):
        a, b = _held(bag, int(t)), _held(bag, int(t) + DT_NS)
        np.testing.assert_allclose(act[:3], b[:3] - a[:3], atol=1e-6)
        yaw = lambda v: 2 * math.atan2(v[5], v[6])  # noqa: E731  pure rotation about z
        assert act[3] == pytest.approx(0.0, abs=1e-6) and act[4] == pytest.approx(0.0, abs=1e-6)
        assert act[5] == pytest.approx(yaw(b) - yaw(a), abs=1e-6)
        assert act[5] > 0.04  # 0.5 rad/s over 0.1 s


def test_gap_splits_episode_and_short_runs_are_dropped(tmp_path):
    # 5 s of data, no images/actions in [1.0, 2.0) and [3.0, 3.8): episodes 0..0.9 s (10 steps),
    # 2.0..2.9 s (10 steps) and 3.8..4.9 s (12 steps); min_episode_steps=11 drops the first two.
    bag = write_demo_bag(tmp_path / "bag", "mcap", num_frames=50, gaps=[(1.0, 1.0), (3.0, 0.8)])
    ds = run(tmp_path, make_config(tmp_path / "bag", min_episode_steps=1))
    assert [len(e) for e in ds.episodes] == [10, 10, 12]
    firsts = [(int(e.timestamps_ns[0]) - bag.start_ns) // 1_000_000 for e in ds.episodes]
    assert firsts == [0, 2000, 3800]
    result = ingest(make_config(tmp_path / "bag", min_episode_steps=11), tmp_path / "out2")
    assert result.summary["episodes"] == 1 and result.summary["steps"] == 12
    short = result.summary["dropped_short_episodes"]
    assert [d["steps"] for d in short] == [10, 10]
    assert result.summary["per_bag"][str((tmp_path / "bag").resolve())]["ticks_dropped_gap"] == 18


def test_new_instruction_starts_new_episode(tmp_path):
    bag = write_demo_bag(
        tmp_path / "bag",
        "sqlite3",
        num_frames=40,
        instructions=[(0.0, "open the drawer"), (1.0, "open the drawer"), (2.05, "close it")],
    )
    ds = run(tmp_path, make_config(tmp_path / "bag"))
    assert [(e.instruction, len(e)) for e in ds.episodes] == [("open the drawer", 21), ("close it", 19)]
    ds2 = EpisodeDataset.load(
        ingest(make_config(tmp_path / "bag", split_on_instruction_message=True), tmp_path / "o2").dataset_dir
    )
    assert [len(e) for e in ds2.episodes] == [10, 11, 19]
    assert bag.instructions[2][2] == "close it"


def test_out_of_order_images_are_sorted_and_counted(tmp_path):
    write_demo_bag(tmp_path / "bag", "mcap", num_frames=20, swap_image_pairs=(5, 11))
    result = ingest(make_config(tmp_path / "bag"), tmp_path / "out")
    assert result.summary["out_of_order"] == {TOPICS.image: 2}
    ep = EpisodeDataset.load(result.dataset_dir).episodes[0]
    assert [frame_of(im) for im in ep.images] == list(range(20))


def test_ros1_bag(tmp_path):
    write_demo_bag(tmp_path / "demo.bag", "ros1", num_frames=15, image_format="bgr8")
    ds = run(tmp_path, make_config(tmp_path / "demo.bag"))
    assert [frame_of(im) for im in ds.episodes[0].images] == list(range(15))


def test_directory_of_bags_and_summary(tmp_path):
    write_demo_bag(tmp_path / "demos" / "a", "mcap", num_frames=12)
    write_demo_bag(tmp_path / "demos" / "b", "sqlite3", num_frames=15, instructions=[(0.0, "stack the cups")])
    seen = []
    result = ingest(make_config(tmp_path / "demos"), tmp_path / "out", progress=seen.append)
    s = result.summary
    assert s["episodes"] == 2 and s["steps"] == 27 and s["skipped_bags"] == []
    assert len(s["bags_used"]) == 2
    assert s["topics"][TOPICS.image]["count"] == 27 and s["topics"][TOPICS.image]["rate_hz"] == 10.0
    assert {p.stage for p in seen} >= {"scan", "done"}
    ds = EpisodeDataset.load(result.dataset_dir)
    assert sorted(e.instruction for e in ds.episodes) == ["pick up the red block", "stack the cups"]
