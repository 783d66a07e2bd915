"""Random-shift augmentation: exact pixel semantics, determinism, and the teacher option."""

import numpy as np
import pytest
import torch

from actdistill_ros.core.config import TeacherTrainConfig
from actdistill_ros.core.training.augment import batch_generator, random_shift
from actdistill_ros.core.typed_config import ConfigError, from_dict, to_dict

from core_helpers import TINY


def test_shift_moves_content_and_repeats_the_border():
    img = torch.arange(6 * 5 * 3, dtype=torch.int64).reshape(1, 6, 5, 3).to(torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = random_shift(img, 2, gen)
    dy, dx = torch.randint(-2, 3, (1, 2), generator=torch.Generator().manual_seed(0))[0].tolist()
    ref = np.asarray(img[0])
    rows = np.clip(np.arange(6) + dy, 0, 5)
    cols = np.clip(np.arange(5) + dx, 0, 4)
    np.testing.assert_array_equal(out[0].numpy(), ref[rows][:, cols])
    assert out.dtype == torch.uint8 and out.shape == img.shape


def test_zero_shift_is_identity_and_offsets_differ_per_image():
    imgs = torch.randint(0, 255, (16, 8, 8, 3), dtype=torch.uint8)
    assert random_shift(imgs, 0, torch.Generator()) is imgs
    out = random_shift(imgs, 3, torch.Generator().manual_seed(1))
    changed = [(out[i] != imgs[i]).any().item() for i in range(16)]
    assert 1 <= sum(changed) <= 16  # (0, 0) offsets leave an image as it was


def test_same_batch_same_augmentation():
    rows = torch.tensor([5, 9, 2])
    a = torch.randint(0, 4, (8,), generator=batch_generator(3, rows))
    b = torch.randint(0, 4, (8,), generator=batch_generator(3, rows))
    c = torch.randint(0, 4, (8,), generator=batch_generator(4, rows))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_teacher_option_validated():
    with pytest.raises(ConfigError, match="augment_shift_px"):
        from_dict(TeacherTrainConfig, {"augment_shift_px": -1, "model": to_dict(TINY)})
    assert from_dict(TeacherTrainConfig, {"augment_shift_px": 4, "model": to_dict(TINY)}).augment_shift_px == 4
