"""Transformers VLMs (LLaVA, Idefics3/SmolVLM, PaliGemma, Qwen2-VL, OpenVLA) as ActDistill teachers.

``load_hf_teacher(model_dir, HFTeacherOptions(...))`` gives a
:class:`~actdistill_ros.core.model.teacher.VLATeacher`; everything downstream (probes, router, routed
student, FLOPs, export, RoutedPolicy) uses it unchanged. See docs/hf_teachers.md.
"""

from .errors import HFTeacherError, HFTeacherOutOfMemoryError
from .model_dir import inspect_model_dir, is_hf_model_dir
from .options import HFTeacherOptions

__all__ = [
    "HFTeacherError",
    "HFTeacherOptions",
    "HFTeacherOutOfMemoryError",
    "HFVLATeacher",
    "inspect_model_dir",
    "is_hf_model_dir",
    "load_hf_teacher",
]


def __getattr__(name: str):
    # the adapter imports transformers' model code: only when it is used
    if name == "HFVLATeacher":
        from .hf_teacher import HFVLATeacher

        return HFVLATeacher
    if name == "load_hf_teacher":
        from .loading import load_hf_teacher

        return load_hf_teacher
    raise AttributeError(name)
