"""The one image path of training data and live inference: ``sensor_msgs/Image`` and
``sensor_msgs/CompressedImage`` messages to RGB uint8, then to the policy's input size.

Bag ingestion (``actdistill_ros.ingest``) and the policy node both decode with :func:`msg_to_rgb`
and resize with :func:`resize_rgb` (the node through the policy's ``prepare``), so a policy sees
at deployment exactly the pixels it was trained on (``test/test_image_path.py`` checks one message
through both). Works on any object with the message's fields (rclpy messages, rosbags messages, test
doubles): ``.encoding .height .width .step .data`` for raw images, ``.format .data`` for
compressed ones. ROS ``cv_bridge`` is deliberately not used (not installable from the
PyPI ROS wheels, and one converter means one behaviour everywhere).

Raw encodings: ``rgb8``, ``bgr8``, ``mono8`` (and its generic alias ``8UC1``), ``rgba8``,
``bgra8`` (alpha dropped, mono replicated to three channels); data must hold exactly
``step * height`` bytes (a short buffer is refused, never padded with invented pixels).
Everything else (16-bit, float, Bayer, YUV) is rejected.
Compressed formats: JPEG and PNG (``format`` as written by ``compressed_image_transport``,
e.g. ``"jpeg"``, ``"rgb8; jpeg compressed bgr8"``, ``"png"``; an empty format is accepted
when the bytes carry a JPEG/PNG signature). ``compressedDepth`` is rejected.

Every rejection raises :class:`ImageDecodeError` whose message names the problem.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

RAW_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "8uc1": 1, "rgba8": 4, "bgra8": 4}
MAX_PIXELS = 8192 * 8192  # guard against absurd headers allocating gigabytes

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageDecodeError(ValueError):
    """An image message can not be turned into an RGB image; the message says why."""


def _as_bytes_view(data: Any) -> np.ndarray:
    """The message's ``data`` (bytes, bytearray, array.array('B'), list of ints, ndarray) as uint8."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8)
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, dtype=np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)  # array.array('B') and other buffers
    except (TypeError, ValueError):
        return np.asarray(list(data), dtype=np.uint8)


def image_msg_to_rgb(msg: Any, copy: bool = True) -> np.ndarray:
    """A ``sensor_msgs/Image`` to an RGB uint8 array ``[H, W, 3]``: a contiguous copy, or with
    ``copy=False`` for ``rgb8`` a read-only view of the message's buffer (no copy of a megabyte
    frame; the caller must not keep it beyond the message)."""
    encoding = str(getattr(msg, "encoding", "")).strip().lower()
    if encoding not in RAW_CHANNELS:
        supported = ", ".join(RAW_CHANNELS)
        raise ImageDecodeError(f"unsupported image encoding {encoding!r} (supported: {supported})")
    channels = RAW_CHANNELS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image has no pixels: {width}x{height}")
    if height * width > MAX_PIXELS:
        raise ImageDecodeError(f"image too large: {width}x{height} > {MAX_PIXELS} pixels")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageDecodeError(
            f"image step {step} is smaller than width*channels = {width}*{channels} = {row_bytes} "
            f"for encoding {encoding}"
        )
    data = _as_bytes_view(msg.data)
    expected = step * height
    if data.size < expected:
        raise ImageDecodeError(
            f"truncated image data: {data.size} bytes < step*height = {step}*{height} = {expected}"
        )
    if data.size > expected:
        raise ImageDecodeError(
            f"image data size mismatch: {data.size} bytes > step*height = {step}*{height} = {expected}"
        )
    rows = data.reshape(height, step)[:, :row_bytes]
    pixels = rows.reshape(height, width, channels)
    if encoding == "rgb8":
        return np.array(pixels, dtype=np.uint8, order="C", copy=True) if copy else pixels
    if encoding == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2RGB)
    if channels == 1:  # mono8, 8UC1
        return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGRA2RGB)  # bgra8


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (JPEG/PNG) to an RGB uint8 array ``[H, W, 3]``."""
    fmt = str(getattr(msg, "format", "")).strip().lower()
    data = _as_bytes_view(msg.data)
    if data.size == 0:
        raise ImageDecodeError("empty compressed image data")
    head = data[:8].tobytes()
    if "compresseddepth" in fmt:
        raise ImageDecodeError(f"unsupported compressed format {fmt!r} (depth images are not camera images)")
    if fmt:
        if "jpeg" in fmt or "jpg" in fmt:
            kind = "jpeg"
        elif "png" in fmt:
            kind = "png"
        else:
            raise ImageDecodeError(f"unsupported compressed format {fmt!r} (supported: jpeg, png)")
        magic = _JPEG_MAGIC if kind == "jpeg" else _PNG_MAGIC
        if not head.startswith(magic):
            raise ImageDecodeError(f"compressed data does not start with a {kind} signature (format {fmt!r})")
    elif not (head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)):
        raise ImageDecodeError("compressed image has no format and no jpeg/png signature")
    decoded = cv2.imdecode(np.ascontiguousarray(data), cv2.IMREAD_COLOR)
    if decoded is None or decoded.size == 0:
        raise ImageDecodeError(f"could not decode compressed image ({data.size} bytes, format {fmt!r})")
    if decoded.shape[0] * decoded.shape[1] > MAX_PIXELS:
        raise ImageDecodeError(f"image too large: {decoded.shape[1]}x{decoded.shape[0]}")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def msg_to_rgb(msg: Any) -> np.ndarray:
    """Dispatch on the message's fields: ``format`` -> compressed, ``encoding`` -> raw."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_msg_to_rgb(msg)
    return image_msg_to_rgb(msg)


def resize_rgb(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize RGB uint8 to (H, W) with area averaging (no aliasing on downscale).

    cv2.INTER_AREA is ~10x slower for non-integer ratios (2.4 ms for 640x480 -> 224x224), so a
    large downscale first takes the exact integer-factor box average, then the remaining
    fractional INTER_AREA step. Training data and the policy both resize here: whatever it
    computes, they compute the same.
    """
    height, width = size
    if img.shape[0] == height and img.shape[1] == width:
        return img
    k = min(img.shape[0] // height, img.shape[1] // width)
    if k >= 2:
        img = cv2.resize(img, (img.shape[1] // k, img.shape[0] // k), interpolation=cv2.INTER_AREA)
        if img.shape[0] == height and img.shape[1] == width:
            return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
