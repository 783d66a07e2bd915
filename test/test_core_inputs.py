"""Bad input gets a clear error naming the problem (or, for image size, a documented resize)."""

import numpy as np
import pytest

from actdistill_ros.core.config import DistillConfig, TinyVLAConfig
from actdistill_ros.core.data.dataset import DatasetError, Episode, EpisodeDataset
from actdistill_ros.core.typed_config import ConfigError, from_dict, load_config

from core_helpers import tiny_teacher


def _episode(**kw):
    args = {"images": np.zeros((3, 8, 8, 3), np.uint8), "actions": np.zeros((3, 7), np.float32),
            "instruction": "go"}
    args.update(kw)
    return Episode(**args)


def test_images_wrong_dtype_channels_and_documented_resize():
    teacher = tiny_teacher()
    with pytest.raises(ValueError, match="uint8"):
        teacher.prepare(np.zeros((1, 32, 32, 3), np.float32), ["go"])
    with pytest.raises(ValueError, match=r"RGB \[H,W,3\]"):
        teacher.prepare(np.zeros((1, 32, 32, 4), np.uint8), ["go"])
    resized = teacher.prepare(np.full((1, 64, 48, 3), 7, np.uint8), ["go"])
    assert resized["pixels"].shape == (1, 32, 32, 3) and int(resized["pixels"].max()) == 7


def test_instruction_empty_too_long_or_count_mismatch():
    teacher = tiny_teacher()
    with pytest.raises(ValueError, match="instruction is empty"):
        teacher.prepare(np.zeros((1, 32, 32, 3), np.uint8), [""])
    sentence = "please move the gripper over to the small red cube on the left of the table, slowly " * 3
    assert len(sentence.encode()) >= 200  # a real sentence, well over the config's max_text_tokens=24
    ids = teacher.prepare(np.zeros((1, 32, 32, 3), np.uint8), [sentence.strip()])["input_ids"]
    assert ids.shape[1] == len(sentence.strip().encode()) + 2  # every byte read, BOS + EOS
    with pytest.raises(ValueError, match="2 images but 1 instructions"):
        teacher.prepare(np.zeros((2, 32, 32, 3), np.uint8), ["go"])


def test_dataset_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match=r"actions must be \[T,7\]"):
        _episode(actions=np.zeros((3, 6), np.float32))
    with pytest.raises(DatasetError, match="non-finite action at step 1, dim dz"):
        _episode(actions=np.array([[0] * 7, [0, 0, np.nan, 0, 0, 0, 0], [0] * 7], np.float32))
    with pytest.raises(DatasetError, match="empty instruction"):
        _episode(instruction=" ")
    with pytest.raises(DatasetError, match="zero episodes"):
        EpisodeDataset([])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no dataset.json"):
        EpisodeDataset.load(tmp_path / "empty")
    EpisodeDataset([_episode(), _episode()]).save(tmp_path / "ds")
    (tmp_path / "ds" / "episode_00001.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="episode_00001.npz: cannot read episode"):
        EpisodeDataset.load(tmp_path / "ds")


def test_dataset_round_trip(tmp_path):
    ep = _episode(images=np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8),
                  actions=np.arange(21, dtype=np.float32).reshape(3, 7), instruction="move to the red cube")
    EpisodeDataset([ep]).save(tmp_path / "ds")
    back = EpisodeDataset.load(tmp_path / "ds").episodes[0]
    assert np.array_equal(back.images, ep.images) and np.array_equal(back.actions, ep.actions)
    assert back.instruction == "move to the red cube"


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key.*loss.keep_ration"):
        from_dict(DistillConfig, {"loss": {"keep_ration": 0.5}})
    with pytest.raises(ConfigError, match=r"^loss.keep_ratio: must be <= 1, got 1.5$"):
        from_dict(DistillConfig, {"loss": {"keep_ratio": 1.5}})
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        from_dict(TinyVLAConfig, {"image_size": 30, "patch_size": 8})
    path = tmp_path / "c.yaml"
    path.write_text("student:\n  epochs: 3\n")
    cfg = load_config(DistillConfig, path, ["loss.keep_ratio=0.4", "student.batch_size=8"])
    assert cfg.student.epochs == 3 and cfg.student.batch_size == 8 and cfg.loss.keep_ratio == 0.4
    with pytest.raises(ConfigError, match="^student.epochs: must be an integer, got 'three'$"):
        load_config(DistillConfig, None, ["student.epochs=three"])
