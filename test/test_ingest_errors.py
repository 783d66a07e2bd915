"""Bad input: each failure is an IngestError naming the bag, the topic and the reason."""

from __future__ import annotations

import re

import numpy as np
import pytest

from actdistill_ros.core.data.dataset import EpisodeDataset
from actdistill_ros.ingest import IngestConfig, IngestError, ingest

from demo_bags import DemoTopics, write_demo_bag

TOPICS = DemoTopics()


def make_config(bags, **kw) -> IngestConfig:
    base = dict(
        bags=bags,
        image_topic=TOPICS.image,
        action_topic=TOPICS.action,
        instruction_topic=TOPICS.instruction,
        image_size=(32, 40),
        min_episode_steps=3,
    )
    base.update(kw)
    return IngestConfig(**base)


def storage_file(bag_dir):
    return next(p for p in bag_dir.iterdir() if p.suffix in (".db3", ".mcap"))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"control_rate_hz": -5.0}, "control_rate_hz"),
        ({"action_source": "joystick"}, "action_source"),
        ({"instruction": "pick"}, "both set"),
        ({"instruction_topic": None}, "neither"),
        ({"image_size": (0, 40)}, "image_size"),
        ({"max_gap_s": 0.01}, "max_gap_s"),
        ({"min_episode_steps": 0}, "min_episode_steps"),
        ({"gripper_topic": "/g"}, "gripper_topic"),
    ],
)
def test_config_validation(tmp_path, kw, match):
    with pytest.raises(IngestError, match=match):
        make_config(tmp_path, **kw)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag(tmp_path, storage):
    bag = tmp_path / "bag"
    write_demo_bag(bag, storage, num_frames=40)
    f = storage_file(bag)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match=str(bag.name)) as err:
        ingest(make_config(bag), tmp_path / "out")
    assert "no usable data" in str(err.value)


def test_missing_topic(tmp_path):
    write_demo_bag(tmp_path / "bag", "mcap", omit_topics=(TOPICS.action,))
    with pytest.raises(IngestError, match=r"bag .*bag: action topic '/teleop/action' not in bag"):
        ingest(make_config(tmp_path / "bag"), tmp_path / "out")


def test_wrong_action_type(tmp_path):
    write_demo_bag(tmp_path / "bag", "mcap", action_source="twist")
    with pytest.raises(
        IngestError, match=r"topic /teleop/action: action has type geometry_msgs/msg/TwistStamped"
    ):
        ingest(make_config(tmp_path / "bag"), tmp_path / "out")


def test_unknown_encoding(tmp_path):
    write_demo_bag(tmp_path / "bag", "sqlite3", image_format="yuv9000")
    with pytest.raises(
        IngestError, match=r"bag .*bag, topic /camera/image_raw: unsupported image encoding 'yuv9000'"
    ):
        ingest(make_config(tmp_path / "bag"), tmp_path / "out")


def test_nan_pose_dropped_and_counted(tmp_path):
    write_demo_bag(
        tmp_path / "bag",
        "mcap",
        num_frames=30,
        action_source="pose",
        action_rate_hz=10.0,
        nan_action_indices=(4, 20),
    )
    result = ingest(make_config(tmp_path / "bag", action_source="pose"), tmp_path / "out")
    assert result.summary["dropped_messages"] == {TOPICS.action: {"non_finite": 2}}
    ds = EpisodeDataset.load(result.dataset_dir)
    assert all(e.actions.shape[1] == 7 for e in ds.episodes)  # Episode.validate: all finite
    # the poses around the dropped ones are 0.2 s apart (<= max_gap_s): still one episode
    assert result.summary["episodes"] == 1


def test_all_nan_actions_is_an_error(tmp_path):
    write_demo_bag(tmp_path / "bag", "mcap", num_frames=5, nan_action_indices=tuple(range(5)))
    with pytest.raises(
        IngestError, match=r"topic /teleop/action: no usable action messages \(5 read; 5 non_finite\)"
    ):
        ingest(make_config(tmp_path / "bag"), tmp_path / "out")


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match=r"no rosbags found in .*empty"):
        ingest(make_config(tmp_path / "empty"), tmp_path / "out")


def test_missing_path(tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        ingest(make_config(tmp_path / "nope"), tmp_path / "out")


def test_one_corrupt_bag_among_several(tmp_path):
    demos = tmp_path / "demos"
    write_demo_bag(demos / "good_mcap", "mcap", num_frames=12)
    write_demo_bag(demos / "good_sqlite", "sqlite3", num_frames=14)
    write_demo_bag(demos / "broken", "mcap", num_frames=20)
    f = storage_file(demos / "broken")
    f.write_bytes(f.read_bytes()[:300])
    write_demo_bag(demos / "no_action", "sqlite3", omit_topics=(TOPICS.action,))
    result = ingest(make_config(demos), tmp_path / "out")
    s = result.summary
    assert s["episodes"] == 2 and s["steps"] == 26
    assert sorted(p.split("/")[-1] for p in s["bags_used"]) == ["good_mcap", "good_sqlite"]
    skipped = {d["bag"].split("/")[-1]: d["reason"] for d in s["skipped_bags"]}
    assert set(skipped) == {"broken", "no_action"}
    assert "broken" in skipped["broken"]
    assert "action topic '/teleop/action' not in bag" in skipped["no_action"]


def test_loose_storage_file_without_metadata(tmp_path):
    # a recording that crashed before writing metadata.yaml: the bare .mcap is still read
    write_demo_bag(tmp_path / "bag", "mcap", num_frames=10)
    (tmp_path / "bag" / "metadata.yaml").unlink()
    result = ingest(make_config(tmp_path / "bag"), tmp_path / "out")
    assert result.summary["steps"] == 10


def test_garbage_inside_an_mcap_is_a_warning_with_the_counts(tmp_path):
    write_demo_bag(tmp_path / "bag", "mcap", num_frames=45, image_size=(64, 64))
    f = storage_file(tmp_path / "bag")
    data = bytearray(f.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 65536] = np.random.default_rng(0).integers(0, 256, 65536, dtype=np.uint8).tobytes()
    f.write_bytes(bytes(data))
    result = ingest(make_config(tmp_path / "bag"), tmp_path / "out")
    warnings = result.summary["warnings"]
    assert len(warnings) == 2, warnings
    read = int(re.search(r"read (\d+) of the 45 messages its index lists on /camera/image_raw", warnings[0])[1])
    assert 0 < read < 45 and "damaged or truncated" in warnings[0]
    assert "/teleop/action" in warnings[1]
    assert result.summary["per_bag"][str(tmp_path / "bag")]["warnings"] == warnings


def test_an_empty_result_shows_each_streams_time_range_and_clock(tmp_path):
    # images stamped by the camera in 2023, the instruction stamped on receipt 50 s later
    write_demo_bag(tmp_path / "bag", "mcap", num_frames=20, instructions=[(50.0, "pick up the red block")])
    with pytest.raises(IngestError) as err:
        ingest(make_config(tmp_path / "bag"), tmp_path / "out")
    text = str(err.value)
    assert "no episode of >= " in text and "/camera/image_raw: 1700000000.000..1700000001.900 s" in text, text
    assert "/instruction: 1700000050.000" in text, text


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_topic_of_an_unparseable_type_does_not_stop_the_wanted_ones(tmp_path, storage):
    """rosbag2 stores service events with the raw .srv text as their definition, which rosbags
    cannot parse: the bag is still read, with the same result as without those events."""
    from demo_bags import SERVICE_EVENT_TOPIC

    write_demo_bag(tmp_path / "with_events", storage, num_frames=20, service_events=3)
    write_demo_bag(tmp_path / "plain", storage, num_frames=20)
    got = ingest(make_config(tmp_path / "with_events"), tmp_path / "out_events")
    want = ingest(make_config(tmp_path / "plain"), tmp_path / "out_plain")
    assert got.summary["skipped_bags"] == [] and got.summary["steps"] == want.summary["steps"] == 20
    a, b = EpisodeDataset.load(got.dataset_dir), EpisodeDataset.load(want.dataset_dir)
    assert np.array_equal(a.episodes[0].images, b.episodes[0].images)
    assert np.array_equal(a.episodes[0].actions, b.episodes[0].actions)
    # asked for as a wanted topic, the unreadable type is one line naming bag, topic and type
    with pytest.raises(IngestError, match=r"with_events, topic /add_two_ints/_service_event: the bag's definition "
                                          r"of example_interfaces/srv/AddTwoInts_Event cannot be read") as err:
        ingest(make_config(tmp_path / "with_events", action_topic=SERVICE_EVENT_TOPIC), tmp_path / "out_bad")
    assert "\n" not in str(err.value).split("\n", 1)[1].strip()
