"""Any exported checkpoint behind the policy API: the routed student, or the teacher itself.

The policy node (and closed-loop evaluation) loads whatever ``checkpoint`` points at: a student
runs routed, a teacher runs every layer. Driving the robot with the teacher through the very
same node is what makes "teacher vs student" a fair closed-loop comparison.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .device import resolve_device, resolve_dtype
from .model.checkpoint import (
    STUDENT_FORMAT,
    TEACHER_FORMAT,
    CheckpointError,
    default_student_path,
    load_teacher,
    read_checkpoint_info,
)
from .model.teacher import VLATeacher
from .policy import PolicyOutput, RoutedPolicy, check_instruction


class TeacherPolicy:
    """The full teacher: every decoder layer, every pass (FLOPs ratio 1 by definition)."""

    def __init__(self, teacher: VLATeacher, device: torch.device, dtype: torch.dtype) -> None:
        self.teacher = teacher.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = device, dtype

    @classmethod
    def load(cls, checkpoint_dir: str | Path, device: str = "auto", dtype: str = "auto") -> TeacherPolicy:
        torch_device = resolve_device(device)
        return cls(load_teacher(checkpoint_dir), torch_device, resolve_dtype(dtype, torch_device))

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.teacher.cfg.image_size
        return (size, size)

    @property
    def chunk_size(self) -> int:
        return self.teacher.chunk_size

    @property
    def layers_total(self) -> int:
        return self.teacher.num_layers

    def set_budget(self, max_layers: int | None = None, threshold: float | None = None) -> None:
        if max_layers is not None and max_layers < self.layers_total:
            raise ValueError("a teacher checkpoint has no router: it always runs every layer (max_layers must be 0)")

    def check_instruction(self, instruction: str) -> None:
        check_instruction(self.teacher, instruction)

    @torch.inference_mode()
    def act(self, image_rgb: np.ndarray, instruction: str) -> PolicyOutput:
        start = time.perf_counter()
        image = np.asarray(image_rgb)
        if image.ndim != 3:
            raise ValueError(f"image must be [H,W,3] uint8 RGB, got shape {list(image.shape)}")
        inputs = {k: v.to(self.device) for k, v in self.teacher.prepare(image, [instruction]).items()}
        actions = self.teacher.normalizer.denormalize(self.teacher(inputs).float())[0]
        actions_np = actions.cpu().numpy().astype(np.float32)
        latency_ms = (time.perf_counter() - start) * 1e3
        if not np.isfinite(actions_np).all():
            raise FloatingPointError("policy produced non-finite actions")
        return PolicyOutput(actions_np, self.layers_total, self.layers_total, 1.0, latency_ms)

    def warmup(self, iterations: int = 3) -> None:
        h, w = self.image_size
        for _ in range(max(1, iterations)):
            self.act(np.zeros((h, w, 3), np.uint8), "warm up")


def load_policy(checkpoint_dir: str | Path | None = None, device: str = "auto",
                dtype: str = "auto", execution: str = "eager") -> RoutedPolicy | TeacherPolicy:
    """A student or teacher checkpoint (told apart by its config.json); None = the shipped student.
    ``execution`` applies to a student (a teacher runs its plain forward)."""
    path = Path(checkpoint_dir) if checkpoint_dir else default_student_path()
    fmt = read_checkpoint_info(path).get("format")
    if fmt == TEACHER_FORMAT:
        return TeacherPolicy.load(path, device=device, dtype=dtype)
    if fmt == STUDENT_FORMAT:
        return RoutedPolicy.load(path, device=device, dtype=dtype, execution=execution)
    raise CheckpointError(f"{path}: format {fmt!r} is neither {STUDENT_FORMAT!r} nor {TEACHER_FORMAT!r}")
