"""RoutedPolicy: the deployable student behind one small API (what the policy node calls).

``act(image, instruction)`` -> a chunk of physical-unit actions plus what it cost
(layers executed, effective FLOPs ratio, latency). ROS-free: usable from any runtime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.images import resize_rgb
from .device import resolve_device, resolve_dtype
from .model.checkpoint import default_student_path, load_student
from .model.flops import component_flops, routed_flops_ratio
from .model.student import RoutedStudent


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


class RoutedPolicy:
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
        image = np.asarray(image_rgb)
        if image.ndim != 3:
            raise ValueError(f"image must be [H,W,3] uint8 RGB, got shape {list(image.shape)}")
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
        executed = out.executed[0].cpu().tolist()
        if not np.isfinite(actions_np).all():
            raise FloatingPointError("policy produced non-finite actions")
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
        h, w = self.image_size
        image = np.zeros((h, w, 3), np.uint8)
        for _ in range(max(1, iterations)):
            self.act(image, "warm up")
