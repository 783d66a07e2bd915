"""The deployable policy: any exported checkpoint behind one small API (what the policy node calls).

``act(image, instruction)`` -> a chunk of physical-unit actions plus what it cost (layers
executed, effective FLOPs ratio, latency). ROS-free: usable from any runtime. :class:`Policy`
is that API; :class:`RoutedPolicy` runs a student (routed), :class:`TeacherPolicy` a teacher
(every layer), and :func:`load_policy` picks by the checkpoint's format. Driving the robot with
the teacher through the very same node is what makes "teacher vs student" a fair closed-loop
comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .data.images import resize_rgb
from .device import resolve_device, resolve_dtype
from .model.checkpoint import (
    STUDENT_FORMAT,
    TEACHER_FORMAT,
    CheckpointError,
    default_student_path,
    load_student,
    load_teacher,
    read_checkpoint_info,
)
from .model.flops import component_flops, routed_flops_ratio
from .model.student import RoutedStudent
from .model.teacher import VLATeacher


@dataclass
class PolicyOutput:
    actions: np.ndarray  # float32 [chunk, 7]: dx,dy,dz (m), droll,dpitch,dyaw (rad), gripper (0..1)
    layers_executed: int
    layers_total: int
    flops_ratio: float  # student/teacher FLOPs of this pass
    latency_ms: float


def check_instruction(model: object, instruction: str) -> None:
    """Tokenize ``instruction`` as ``model`` would, without running it: the policy node checks an
    instruction once on arrival instead of failing at every tick. ValueError says why."""
    encode = getattr(model, "_encode", None)  # transformers teachers: the whole prompt
    if encode is None:
        encode = model.tokenizer.encode  # TinyVLA: bytes or words
    encode(instruction)


@runtime_checkable
class Policy(Protocol):
    """What the policy node, closed-loop evaluation and benchmarks call, whatever the checkpoint
    holds: :class:`RoutedPolicy` and :class:`TeacherPolicy` implement it (test_core_checkpoint
    checks both against it)."""

    device: torch.device
    dtype: torch.dtype

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) the model reads; other images are resized."""

    @property
    def chunk_size(self) -> int:
        """Actions per prediction."""

    @property
    def layers_total(self) -> int:
        """Decoder layers of the backbone."""

    def set_budget(self, max_layers: int | None = None, threshold: float | None = None) -> None:
        """Cap the layers a pass runs (ValueError when this policy can not)."""

    def check_instruction(self, instruction: str) -> None:
        """Raise ValueError, naming the problem, when the model can not take this instruction."""

    def act(self, image_rgb: np.ndarray, instruction: str) -> PolicyOutput:
        """One prediction: an RGB uint8 [H, W, 3] image and the instruction -> an action chunk."""

    def warmup(self, iterations: int = 3) -> None:
        """Run a few passes on a blank image, so that the first real one is not the slow one."""


def _image(image_rgb: np.ndarray) -> np.ndarray:
    image = np.asarray(image_rgb)
    if image.ndim != 3:
        raise ValueError(f"image must be [H,W,3] uint8 RGB, got shape {list(image.shape)}")
    return image


def _check_finite(actions: np.ndarray) -> None:
    if not np.isfinite(actions).all():
        raise FloatingPointError("policy produced non-finite actions")


def _warm_up(policy: Policy, iterations: int) -> None:
    h, w = policy.image_size
    image = np.zeros((h, w, 3), np.uint8)
    for _ in range(max(1, iterations)):
        policy.act(image, "warm up")


class RoutedPolicy:
    """A student checkpoint: the router decides per input which decoder layers run."""

    def __init__(self, student: RoutedStudent, device: torch.device, dtype: torch.dtype) -> None:
        self.student = student.to(device=device, dtype=dtype).eval()
        self.device, self.dtype = device, dtype
        self._flops: dict | None = None
        self._text: tuple[str, torch.Tensor] | None = None  # the last instruction, tokenized
        self._pixels: tuple[np.ndarray, torch.Tensor, torch.Tensor] | None = None  # host array, its tensor, device copy

    @classmethod
    def load(cls, checkpoint_dir: str | Path | None = None, device: str = "auto", dtype: str = "auto",
             execution: str = "eager") -> RoutedPolicy:
        """Load an exported student; ``None``/'' means the shipped default checkpoint.
        ``execution``: how routes run (``route_exec.Execution``: eager, compile, cuda_graphs).

        Raises CheckpointError (missing/corrupt checkpoint) or ValueError (device/dtype/execution)."""
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        path = Path(checkpoint_dir) if checkpoint_dir else default_student_path()
        policy = cls(load_student(path), torch_device, torch_dtype)
        policy.student.set_execution(execution)
        policy.student.executor.check_device(torch_device)
        return policy

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.student.backbone.cfg.image_size
        return (size, size)

    @property
    def chunk_size(self) -> int:
        return self.student.backbone.chunk_size

    @property
    def layers_total(self) -> int:
        return self.student.num_layers

    def set_budget(self, max_layers: int | None = None, threshold: float | None = None) -> None:
        self.student.set_budget(max_layers=max_layers, threshold=threshold)

    def check_instruction(self, instruction: str) -> None:
        """Raise ValueError, naming the problem, when the model can not take this instruction."""
        check_instruction(self.student.backbone, instruction)

    def _inputs(self, image_rgb: np.ndarray, instruction: str) -> dict[str, torch.Tensor]:
        image = _image(image_rgb)
        backbone = self.student.backbone
        if not hasattr(backbone, "tokenizer") or image.shape[-1] != 3 or image.dtype != np.uint8:
            return backbone.prepare(image, [instruction])  # (which also reports what is wrong)
        return {"pixels": self._pixel_tensor(image), "input_ids": self._token_ids(instruction)}

    def _token_ids(self, instruction: str) -> torch.Tensor:
        """The instruction changes rarely, the image every frame: tokenize once per instruction."""
        if self._text is None or self._text[0] != instruction:
            ids = self.student.backbone.tokenizer.batch([instruction])[0].to(self.device)
            self._text = (instruction, ids)
        return self._text[1]

    def _pixel_tensor(self, image: np.ndarray) -> torch.Tensor:
        """The frame resized (core/data/images.py, as ingestion does) into one preallocated (on CUDA:
        pinned) buffer, then one transfer to a preallocated device tensor."""
        h, w = self.image_size
        if self._pixels is None:
            host = torch.empty((1, h, w, 3), dtype=torch.uint8, pin_memory=self.device.type == "cuda")
            device = host if self.device.type == "cpu" else torch.empty_like(host, device=self.device)
            self._pixels = (host.numpy(), host, device)
        array, host, device = self._pixels
        np.copyto(array[0], resize_rgb(image, (h, w)))  # the resize ingestion uses: the pixels training saw
        if device is not host:
            device.copy_(host, non_blocking=True)
        return device

    @torch.inference_mode()
    def act(self, image_rgb: np.ndarray, instruction: str) -> PolicyOutput:
        start = time.perf_counter()
        inputs = self._inputs(image_rgb, instruction)
        out = self.student.forward_routed(inputs)
        actions = self.student.backbone.normalizer.denormalize(out.actions.float())[0]
        actions_np = actions.cpu().numpy().astype(np.float32)  # includes the device sync
        latency_ms = (time.perf_counter() - start) * 1e3
        executed = out.executed[0].tolist()  # on the host already
        _check_finite(actions_np)
        ratio = routed_flops_ratio(self.flops_components(inputs), executed)
        return PolicyOutput(actions_np, int(sum(executed)), self.layers_total, ratio, latency_ms)

    def flops_components(self, inputs: dict[str, torch.Tensor] | None = None) -> dict:
        """Per-part FLOPs of one batch-1 pass, counted once (first call) and reused."""
        if self._flops is None:
            if inputs is None:
                inputs = self._dummy_inputs()
            self._flops = component_flops(self.student.backbone, inputs, self.student)
        return self._flops

    def _dummy_inputs(self) -> dict[str, torch.Tensor]:
        h, w = self.image_size
        return self.student.backbone.prepare(np.zeros((h, w, 3), np.uint8), ["warm up"])

    def warmup(self, iterations: int = 3) -> None:
        self.flops_components()
        _warm_up(self, iterations)


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
        image = _image(image_rgb)
        inputs = {k: v.to(self.device) for k, v in self.teacher.prepare(image, [instruction]).items()}
        actions = self.teacher.normalizer.denormalize(self.teacher(inputs).float())[0]
        actions_np = actions.cpu().numpy().astype(np.float32)
        latency_ms = (time.perf_counter() - start) * 1e3
        _check_finite(actions_np)
        return PolicyOutput(actions_np, self.layers_total, self.layers_total, 1.0, latency_ms)

    def warmup(self, iterations: int = 3) -> None:
        _warm_up(self, iterations)


def load_policy(checkpoint_dir: str | Path | None = None, device: str = "auto",
                dtype: str = "auto", execution: str = "eager") -> Policy:
    """A student or teacher checkpoint (told apart by its config.json); None = the shipped student.
    ``execution`` applies to a student (a teacher runs its plain forward)."""
    path = Path(checkpoint_dir) if checkpoint_dir else default_student_path()
    fmt = read_checkpoint_info(path).get("format")
    if fmt == TEACHER_FORMAT:
        return TeacherPolicy.load(path, device=device, dtype=dtype)
    if fmt == STUDENT_FORMAT:
        return RoutedPolicy.load(path, device=device, dtype=dtype, execution=execution)
    raise CheckpointError(f"{path}: format {fmt!r} is neither {STUDENT_FORMAT!r} nor {TEACHER_FORMAT!r}")
