"""Image messages to RGB without cv_bridge; specific errors for malformed messages."""

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from actdistill_ros.core.data.images import (
    ImageDecodeError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    msg_to_rgb,
)

# a 2x3 RGB image with distinct pixels
RGB = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[10, 20, 30], [40, 50, 60], [70, 80, 90]]], dtype=np.uint8
)


def raw(encoding, pixels, step=None, data=None, as_array=True):
    h, w = pixels.shape[:2]
    row = pixels.reshape(h, -1)
    step = row.shape[1] if step is None else step
    if data is None:
        padded = np.zeros((h, step), dtype=np.uint8)
        padded[:, : row.shape[1]] = row
        data = padded.tobytes()
    if as_array:  # rclpy gives uint8[] fields as array.array('B')
        data = array.array("B", data)
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=step, data=data, is_bigendian=0)


def test_rgb8():
    out = image_msg_to_rgb(raw("rgb8", RGB))
    np.testing.assert_array_equal(out, RGB)
    assert out.dtype == np.uint8 and out.flags.c_contiguous and out.flags.writeable


def test_rgb8_without_copy_is_a_view_of_the_message():
    msg = raw("rgb8", RGB)
    out = image_msg_to_rgb(msg, copy=False)
    np.testing.assert_array_equal(out, RGB)
    assert np.shares_memory(out, np.frombuffer(msg.data, dtype=np.uint8))
    padded = image_msg_to_rgb(raw("rgb8", RGB, step=11), copy=False)  # row padding: a strided view
    np.testing.assert_array_equal(padded, RGB)
    bgr = raw("bgr8", RGB[:, :, ::-1].copy())  # other encodings are converted anyway
    np.testing.assert_array_equal(image_msg_to_rgb(bgr, copy=False), RGB)


def test_bgr8_swaps_channels():
    np.testing.assert_array_equal(image_msg_to_rgb(raw("bgr8", RGB[:, :, ::-1].copy())), RGB)


def test_rgba8_and_bgra8_drop_alpha():
    alpha = np.full((2, 3, 1), 7, dtype=np.uint8)
    np.testing.assert_array_equal(image_msg_to_rgb(raw("rgba8", np.concatenate([RGB, alpha], 2))), RGB)
    bgra = np.concatenate([RGB[:, :, ::-1], alpha], 2)
    np.testing.assert_array_equal(image_msg_to_rgb(raw("bgra8", bgra)), RGB)


def test_mono8_replicated():
    mono = np.array([[0, 100, 200], [1, 2, 3]], dtype=np.uint8)
    out = image_msg_to_rgb(raw("mono8", mono[:, :, None]))
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[:, :, 0], mono)
    np.testing.assert_array_equal(out[:, :, 2], mono)
    np.testing.assert_array_equal(image_msg_to_rgb(raw("8UC1", mono[:, :, None])), out)  # the generic alias


def test_row_padding_is_skipped():
    msg = raw("rgb8", RGB, step=12)  # 9 bytes of pixels + 3 padding bytes per row
    assert len(msg.data) == 24
    np.testing.assert_array_equal(image_msg_to_rgb(msg), RGB)


def test_bytes_and_list_data_accepted():
    np.testing.assert_array_equal(image_msg_to_rgb(raw("rgb8", RGB, as_array=False)), RGB)
    msg = raw("rgb8", RGB)
    msg.data = list(RGB.reshape(-1))
    np.testing.assert_array_equal(image_msg_to_rgb(msg), RGB)


def test_encoding_case_insensitive():
    np.testing.assert_array_equal(image_msg_to_rgb(raw("RGB8", RGB)), RGB)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1", "bayer_rggb8", "yuv422", "mono16", ""])
def test_unknown_encoding_rejected(encoding):
    with pytest.raises(ImageDecodeError, match="unsupported image encoding"):
        image_msg_to_rgb(raw(encoding, RGB))


def test_truncated_rejected():
    msg = raw("rgb8", RGB)
    msg.data = msg.data[:-1]
    with pytest.raises(ImageDecodeError, match=r"truncated image data: 17 bytes < step\*height = 9\*2 = 18"):
        image_msg_to_rgb(msg)


def test_too_long_rejected():
    msg = raw("rgb8", RGB)
    msg.data = bytes(msg.data) + b"\x00"
    with pytest.raises(ImageDecodeError, match="size mismatch: 19 bytes"):
        image_msg_to_rgb(msg)


def test_wrong_width_rejected():
    msg = raw("rgb8", RGB)
    msg.width = 4  # step 9 < 4*3
    with pytest.raises(ImageDecodeError, match=r"step 9 is smaller than width\*channels = 4\*3 = 12"):
        image_msg_to_rgb(msg)


def test_wrong_height_rejected_as_truncated():
    msg = raw("rgb8", RGB)
    msg.height = 3
    with pytest.raises(ImageDecodeError, match="truncated"):
        image_msg_to_rgb(msg)


@pytest.mark.parametrize(("h", "w"), [(0, 3), (2, 0)])
def test_empty_image_rejected(h, w):
    msg = raw("rgb8", RGB)
    msg.height, msg.width = h, w
    with pytest.raises(ImageDecodeError, match="no pixels"):
        image_msg_to_rgb(msg)


def test_huge_header_rejected_without_allocating():
    msg = SimpleNamespace(encoding="rgb8", height=100000, width=100000, step=300000, data=b"")
    with pytest.raises(ImageDecodeError, match="too large"):
        image_msg_to_rgb(msg)


def compressed(fmt, ext, pixels=None):
    pixels = np.tile(RGB, (8, 8, 1)) if pixels is None else pixels
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(pixels[:, :, ::-1]))  # cv2 encodes BGR
    assert ok
    return SimpleNamespace(format=fmt, data=array.array("B", buf.tobytes()))


def test_png_lossless():
    expected = np.tile(RGB, (8, 8, 1))
    np.testing.assert_array_equal(compressed_msg_to_rgb(compressed("png", ".png")), expected)
    # compressed_image_transport style format string
    np.testing.assert_array_equal(
        compressed_msg_to_rgb(compressed("rgb8; png compressed bgr8", ".png")), expected
    )


def test_jpeg_close():
    flat = np.zeros((16, 16, 3), dtype=np.uint8)
    flat[:] = (200, 30, 90)
    for fmt in ("jpeg", "rgb8; jpeg compressed bgr8", "JPG", ""):
        out = compressed_msg_to_rgb(compressed(fmt, ".jpg", flat))
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - flat.astype(int)).max() <= 4  # red stays red (channel order)


@pytest.mark.parametrize("fmt", ["tiff", "16UC1; compressedDepth png", "webp"])
def test_unknown_compressed_format_rejected(fmt):
    with pytest.raises(ImageDecodeError, match="unsupported compressed format"):
        compressed_msg_to_rgb(compressed(fmt, ".png"))


def test_format_and_signature_disagree():
    with pytest.raises(ImageDecodeError, match="does not start with a jpeg signature"):
        compressed_msg_to_rgb(compressed("jpeg", ".png"))


def test_truncated_compressed_rejected():
    msg = compressed("png", ".png")
    msg.data = msg.data[:40]
    with pytest.raises(ImageDecodeError, match="could not decode compressed image"):
        compressed_msg_to_rgb(msg)


def test_garbage_and_empty_rejected():
    with pytest.raises(ImageDecodeError, match="empty compressed image"):
        compressed_msg_to_rgb(SimpleNamespace(format="jpeg", data=b""))
    with pytest.raises(ImageDecodeError, match="no format and no jpeg/png signature"):
        compressed_msg_to_rgb(SimpleNamespace(format="", data=b"hello world"))


def test_dispatch():
    np.testing.assert_array_equal(msg_to_rgb(raw("rgb8", RGB)), RGB)
    assert msg_to_rgb(compressed("png", ".png")).shape == (16, 24, 3)
