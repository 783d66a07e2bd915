"""Bag images through the shared image path (``actdistill_ros.core.data.images``), with the bag and
topic in every error: the policy node decodes and resizes live frames with the same functions."""

from __future__ import annotations

import numpy as np

from actdistill_ros.core.data.images import ImageDecodeError, msg_to_rgb, resize_rgb

from .config import IngestError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")

__all__ = ["IMAGE_TYPES", "decode_image", "resize_rgb"]


def decode_image(msg: object, *, topic: str = "?", bag: str = "?") -> np.ndarray:
    """A deserialized Image/CompressedImage message as a contiguous RGB uint8 [H,W,3]."""
    try:
        return msg_to_rgb(msg)
    except ImageDecodeError as exc:
        raise IngestError(f"bag {bag}, topic {topic}: {exc}") from None
