"""Small shared builders for core tests (tiny models, synthetic data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from actdistill_ros.core.config import RouterConfig, TinyVLAConfig
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.model.tiny_vla import TinyVLA

TINY = TinyVLAConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=4, num_heads=2,
                     intermediate_size=64, max_text_tokens=24, chunk_size=2)


def tiny_teacher(seed: int = 0) -> TinyVLA:
    torch.manual_seed(seed)
    return TinyVLA(TINY).eval()


def tiny_student(seed: int = 0, gate_bias: list[float] | None = None) -> RoutedStudent:
    """A student whose gates are fixed by the router bias (weights zeroed) when given."""
    student = RoutedStudent.from_teacher(tiny_teacher(seed), RouterConfig(router_dim=8)).eval()
    if gate_bias is not None:
        with torch.no_grad():
            student.router.gate_head.weight.zero_()
            student.router.gate_head.bias.copy_(torch.tensor(gate_bias))
    return student


def tiny_inputs(model: TinyVLA, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (batch, 32, 32, 3), dtype=np.uint8)
    words = ["move to the red cube", "go to the blue block", "touch the green one"]
    return model.prepare(images, [words[i % 3] for i in range(batch)])


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package), so a test
    can call its ``main(argv)`` and its functions in process."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
