"""ParameterDescriptors from config fields: the description, and the range where the field has
both bounds (``Field(ge/gt=..., le/lt=...)``), so ``ros2 param describe`` shows what validation
enforces. Shared by the policy, distillation and sim nodes."""

from __future__ import annotations

from typing import Any

from pydantic.fields import FieldInfo
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from actdistill_ros.core.typed_config import field_range


def descriptor(description: str, default: Any, bounds: tuple[float, float] | None, *, read_only: bool = False,
               dynamic_typing: bool = True) -> ParameterDescriptor:
    """An integer range for an int default, a floating-point range otherwise (inclusive ends)."""
    out = ParameterDescriptor(description=description, read_only=read_only, dynamic_typing=dynamic_typing)
    if bounds is not None and isinstance(default, int) and not isinstance(default, bool):
        out.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
    elif bounds is not None:
        out.floating_point_range = [FloatingPointRange(from_value=float(bounds[0]), to_value=float(bounds[1]),
                                                       step=0.0)]
    return out


def field_descriptor(info: FieldInfo, default: Any, description: str | None = None) -> ParameterDescriptor:
    """The descriptor of a config field: its description (or ``description``) and its range."""
    text = (info.description or "") if description is None else description
    return descriptor(text, default, field_range(info))
