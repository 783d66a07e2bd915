"""Cache: the same config over unchanged bags loads the stored dataset without decoding."""

from __future__ import annotations

import os

import numpy as np

from actdistill_ros.core.data.dataset import EpisodeDataset
from actdistill_ros.ingest import IngestConfig, ingest
from actdistill_ros.ingest import bags_to_dataset as pipeline_module

from demo_bags import DemoTopics, write_demo_bag

TOPICS = DemoTopics()


def make_config(tmp_path, **kw) -> IngestConfig:
    base = dict(
        bags=tmp_path / "bags",
        image_topic=TOPICS.image,
        action_topic=TOPICS.action,
        instruction_topic=TOPICS.instruction,
        image_size=(32, 40),
        min_episode_steps=3,
        cache_dir=tmp_path / "cache",
    )
    base.update(kw)
    return IngestConfig(**base)


def test_cache_hit_on_rerun_and_invalidation(tmp_path, monkeypatch):
    write_demo_bag(tmp_path / "bags" / "a", "mcap", num_frames=12)
    write_demo_bag(tmp_path / "bags" / "b", "sqlite3", num_frames=10)
    first = ingest(make_config(tmp_path), tmp_path / "out1")
    assert not first.cache_hit and first.summary["cache"]["hit"] is False

    calls = []
    real = pipeline_module._ingest_bag
    monkeypatch.setattr(pipeline_module, "_ingest_bag", lambda *a, **k: calls.append(a) or real(*a, **k))
    second = ingest(make_config(tmp_path), tmp_path / "out2")
    assert second.cache_hit and calls == []  # nothing was read or decoded
    assert second.summary["cache"]["hit"] is True and second.summary["steps"] == first.summary["steps"]
    a, b = EpisodeDataset.load(first.dataset_dir), EpisodeDataset.load(second.dataset_dir)
    for ea, eb in zip(a.episodes, b.episodes, strict=True):
        np.testing.assert_array_equal(ea.images, eb.images)
        np.testing.assert_array_equal(ea.actions, eb.actions)

    # a different config misses
    third = ingest(make_config(tmp_path, min_episode_steps=4), tmp_path / "out3")
    assert not third.cache_hit and len(calls) == 2
    # a touched bag misses
    f = next((tmp_path / "bags" / "a").glob("*.mcap"))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    fourth = ingest(make_config(tmp_path), tmp_path / "out4")
    assert not fourth.cache_hit and len(calls) == 4


def test_corrupt_cache_entry_is_rebuilt(tmp_path):
    write_demo_bag(tmp_path / "bags" / "a", "mcap", num_frames=12)
    first = ingest(make_config(tmp_path), tmp_path / "out1")
    entry = tmp_path / "cache" / first.summary["cache"]["key"]
    next(entry.glob("episode_*.npz")).write_bytes(b"garbage")
    again = ingest(make_config(tmp_path), tmp_path / "out2")
    assert not again.cache_hit and again.summary["steps"] == 12
    assert ingest(make_config(tmp_path), tmp_path / "out3").cache_hit
