"""FLOPs counted by running the code (torch.utils.flop_counter), never estimated by formula:
a skipped layer is not called, so it contributes nothing."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .student import RoutedStudent
from .teacher import VLATeacher


# torch's counter knows the CUDA attention kernels but not the CPU flash kernel that
# scaled_dot_product_attention uses on CPU; without this, attention would count as 0 FLOPs.
def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flop


def count_flops(fn: Callable[[], object]) -> int:
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        fn()
    return int(counter.get_total_flops())


def component_flops(teacher: VLATeacher, inputs: dict[str, torch.Tensor], student: RoutedStudent | None = None) -> dict:
    """FLOPs of each part for one input batch: embed, router, every layer, head.

    Used to turn the executed-layer list of a routed pass into an effective FLOPs ratio
    cheaply at run time (counting every control step would cost more than the model).
    """
    batch = teacher.embed(inputs)
    out = {"embed": count_flops(lambda: teacher.embed(inputs))}
    out["router"] = count_flops(lambda: student.gate_probs(batch)) if student is not None else 0
    hidden = batch.hidden
    layers = []
    for index in range(teacher.num_layers):
        layers.append(count_flops(lambda i=index, h=hidden: teacher.run_layer(i, h, batch)))
    out["layers"] = layers
    out["head"] = count_flops(lambda: teacher.head(hidden, batch))
    out["teacher_total"] = out["embed"] + sum(layers) + out["head"]
    return out


def routed_flops_ratio(components: dict, executed: list[bool]) -> float:
    """Student/teacher FLOPs for one pass given which layers ran."""
    student = components["embed"] + components["router"] + components["head"]
    student += sum(f for f, ran in zip(components["layers"], executed, strict=True) if ran)
    return student / components["teacher_total"]


def layer_share(components: dict) -> float:
    """One decoder layer's fraction of a full student pass (all layers run): the latency model of
    the node's latency deadline (``control/latency_budget.py``) counts the rest as fixed."""
    layers = components["layers"]
    full = components["embed"] + components["router"] + components["head"] + sum(layers)
    return sum(layers) / len(layers) / full
