"""Loading a model's own processor and reading what the adapter needs from it.

The processor decides how many image tokens a prompt gets and where; the adapter never
re-implements that. One workaround: processors with a video processor (Qwen2-VL, SmolVLM) cannot
be built at all without torchvision in transformers 5.x (even for images only), so without
torchvision they are assembled from their tokenizer and image processor, with no video processor.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

from .errors import HFTeacherError

TEXT_SIDE_EXCLUDED = {"labels", "pixel_values", "pixel_attention_mask", "image_grid_thw", "image_sizes"}


def _processor_class_name(path: Path) -> str | None:
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = path / name
        if file.is_file():
            try:
                value = json.loads(file.read_text()).get("processor_class")
            except ValueError:
                continue
            if value:
                return value
    return None


def processor_class_without_video(cls: type) -> type:
    """``cls`` that accepts ``video_processor=None`` (transformers 5.x checks its class even when None,
    which fails without torchvision)."""

    class WithoutVideo(cls):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    WithoutVideo.__name__ = WithoutVideo.__qualname__ = cls.__name__
    return WithoutVideo


def _without_video(path: Path, cause: Exception) -> Any:
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    name = _processor_class_name(path)
    cls = getattr(transformers, name, None) if name else None
    if cls is None or "video_processor" not in cls.get_attributes():
        raise HFTeacherError(f"{path}: cannot load the processor ({type(cause).__name__}: {cause})") from cause
    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = AutoImageProcessor.from_pretrained(path)
    try:
        return processor_class_without_video(cls)(
            image_processor=image_processor, tokenizer=tokenizer, video_processor=None, **_own_settings(path, cls)
        )
    except ImportError as exc:  # e.g. SmolVLM's processor wants num2words even for images
        raise HFTeacherError(f"{path}: the {name} needs a package that is not installed: {exc}") from exc


def _own_settings(path: Path, cls: type) -> dict[str, Any]:
    """The processor's own settings saved beside the model (processor_config.json and its chat
    template, e.g. SmolVLM's ``image_seq_len``): without them the stand-in would use the class
    defaults, which need not match the model (169 image tokens against the 64 a SmolVLM uses)."""
    try:
        settings, _ = cls.get_processor_dict(str(path))
    except (OSError, ValueError) as exc:
        raise HFTeacherError(f"{path}: cannot read the processor's settings ({type(exc).__name__}: {exc})") from exc
    accepted = inspect.signature(cls.__init__).parameters
    ignored = {"image_processor", "tokenizer", "video_processor", "processor_class", "auto_map"}
    return {key: value for key, value in settings.items() if key in accepted and key not in ignored}


def load_processor(path: str | Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    path = Path(path)
    try:
        return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ImportError, AttributeError, TypeError) as exc:
        if is_torchvision_available():
            raise HFTeacherError(f"{path}: cannot load the processor ({type(exc).__name__}: {exc})") from exc
        return _without_video(path, exc)
    except (OSError, ValueError) as exc:
        raise HFTeacherError(f"{path}: cannot load the processor ({type(exc).__name__}: {exc})") from exc


def _size_get(size: Any, key: str) -> Any:
    if size is None:
        return None
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def processor_image_size(image_processor: Any, default: int = 224) -> int:
    """The square input size the image processor is made for (what camera images are resized to)."""
    patch, merge = getattr(image_processor, "patch_size", None), getattr(image_processor, "merge_size", None)
    size = getattr(image_processor, "size", None)
    if isinstance(patch, int) and isinstance(merge, int):  # Qwen2-VL style: size bounds are pixel counts
        factor = patch * merge
        low = _size_get(size, "shortest_edge") or _size_get(size, "min_pixels") or factor * factor
        high = _size_get(size, "longest_edge") or _size_get(size, "max_pixels") or (4 * default) ** 2
        lo_side = math.ceil(math.sqrt(low) / factor) * factor
        hi_side = max(lo_side, math.floor(math.sqrt(high) / factor) * factor)
        return min(max(round(default / factor) * factor, lo_side), hi_side)
    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and _size_get(crop, "height"):
        return int(_size_get(crop, "height"))
    for candidate in (
        _size_get(size, "height"),
        _size_get(size, "shortest_edge"),
        _size_get(getattr(image_processor, "max_image_size", None), "longest_edge"),
        _size_get(size, "longest_edge"),
    ):
        if candidate:
            return int(candidate)
    return default


def image_placeholder(processor: Any, config: Any, family) -> str:
    """The text that stands for one image in a prompt of this family ('' when the model inserts it itself)."""
    if family.vision_layout != "placeholder":
        return ""
    token = getattr(processor, "image_token", None)
    if not token:
        raise HFTeacherError(f"the {type(processor).__name__} has no image_token: cannot place the image in the prompt")
    tokenizer = processor.tokenizer
    around = []
    for attr in (family.image_prefix_token_attr, family.image_suffix_token_attr):
        token_id = getattr(config, attr, None) if attr else None
        around.append(tokenizer.convert_ids_to_tokens(token_id) if token_id is not None else "")
    return around[0] + token + around[1]


def image_token_id(processor: Any) -> int | None:
    """The id the processor writes for image placeholders (None when it has none)."""
    token_id = getattr(processor, "image_token_id", None)
    if token_id is None and getattr(processor, "image_token", None):
        token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    return token_id
