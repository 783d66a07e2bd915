"""Simpler ways to drop layers, which the learned router has to beat to earn its keep.

Each baseline runs the same number of layers per pass as the distilled student and gets the
same training budget (stage 2's steps, batch and learning rate), so a comparison isolates what
the per-input route adds:

* ``static``: the best fixed set of layers, chosen greedily on the teacher's weights (drop the
  layer whose removal costs least, until the student's layer count is left; errors measured
  on training samples, so the held-out episodes stay unseen), then fine-tuned with the task
  loss;
* ``static_untuned``: that set on the teacher's weights as they are;
* ``random``: a fresh random set of layers for every sample and pass, fine-tuned with random
  routes (the network learns to work with any subset, as with LayerDrop) and run that way.

Every baseline is a :class:`~actdistill_ros.core.model.student.RoutedStudent` with a ``fixed`` or
``random`` router, so it exports, loads, benchmarks and drives the robot like the student.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import MemoryConfig, OptimConfig, RouterConfig
from ..model.student import RoutedStudent
from ..model.teacher import VLATeacher
from ..progress import progress_bar
from .loop import LoopResult, run_loop
from .memory import apply_memory_options, autocast, check_memory_options, trainable_parameters
from .parallel import SINGLE, World
from .stages import TensorData, evaluate, finish_training

BASELINES = ("static", "static_untuned", "random")
SELECTION_SAMPLES = 2048  # training samples the greedy selection scores each candidate set on


@dataclass
class GreedyStep:
    removed: int
    kept: list[int]
    action_mse: float


@dataclass
class GreedySelection:
    layers: list[int]
    trace: list[GreedyStep] = field(default_factory=list)

    def levels(self) -> list[list[int]]:
        """The layers by how long the search kept them: [the kept set, the last layer dropped, ...,
        the first]: a learned router's starting ranking (``Router.rank_layers``)."""
        return [sorted(self.layers)] + [[step.removed] for step in reversed(self.trace)]

    @classmethod
    def from_dict(cls, data: dict) -> GreedySelection:
        return cls(list(data["layers"]), [GreedyStep(**step) for step in data["trace"]])


def fixed_route_student(teacher: VLATeacher, layers: list[int]) -> RoutedStudent:
    """A copy of ``teacher`` that always runs ``layers``."""
    return RoutedStudent(copy.deepcopy(teacher), RouterConfig(kind="fixed", fixed_layers=sorted(layers)))


def random_route_student(teacher: VLATeacher, layers_per_pass: int) -> RoutedStudent:
    """A copy of ``teacher`` that runs ``layers_per_pass`` random layers per sample and pass."""
    return RoutedStudent(copy.deepcopy(teacher), RouterConfig(kind="random", random_layers=layers_per_pass))


@torch.no_grad()
def greedy_layer_selection(teacher: VLATeacher, data: TensorData, keep_layers: int,
                           progress: bool = True) -> GreedySelection:
    """Drop layers one at a time, each time the one whose removal gives the lowest action error
    of the untuned network on ``data``, until ``keep_layers`` are left (a bar counts the candidate
    sets scored: minutes on a big model)."""
    if not 1 <= keep_layers <= teacher.num_layers:
        raise ValueError(f"keep_layers must be in [1, {teacher.num_layers}], got {keep_layers}")
    kept = list(range(teacher.num_layers))
    trace: list[GreedyStep] = []
    probe = fixed_route_student(teacher, kept).eval()
    candidates = sum(range(keep_layers + 1, teacher.num_layers + 1))
    with progress_bar(candidates, "greedy layer search", unit="set", enabled=progress) as bar:
        while len(kept) > keep_layers:
            scores = []
            for layer in kept:
                set_route(probe, [i for i in kept if i != layer])
                scores.append((evaluate(probe, data, routed=True)["action_mse"], layer))
                bar.update(1)
            mse, layer = min(scores)
            kept.remove(layer)
            trace.append(GreedyStep(layer, list(kept), mse))
    return GreedySelection(kept, trace)


def finetune_routed(student: RoutedStudent, data: TensorData, cfg: OptimConfig, run_dir: Path, name: str,
                    memory: MemoryConfig | None = None, world: World = SINGLE,
                    stop_after: int | None = None, frozen: tuple[nn.Module, ...] = (),
                    on_step: Callable[[int, int], None] | None = None) -> LoopResult:
    """Train the backbone of a fixed- or random-route student with the action head's task loss
    alone (the router has nothing to learn); resumable like every stage (``run_dir/<name>_*``).
    ``frozen``: parts of the backbone left as they are (benchmarks/router_diagnostic.py keeps the
    embedding a learned router reads, so that its routes cannot move). ``on_step(step, total)``
    runs before each step (e.g. :func:`set_route` from :func:`progressive_route`)."""
    memory = memory or MemoryConfig()
    device = next(student.parameters()).device
    check_memory_options(memory, device)
    student.backbone.requires_grad_(True)
    for module in frozen:
        module.requires_grad_(False)
    apply_memory_options(student.backbone, memory)
    forward_train = world.wrap_method(student, "forward_train", shard_units=list(student.backbone.layers))
    optimizer = torch.optim.AdamW(trainable_parameters(student.backbone), lr=cfg.lr, weight_decay=cfg.weight_decay)
    normalizer = student.backbone.normalizer

    def step(rows: torch.Tensor):
        inputs, target = data.rows(rows, device)
        with autocast(memory, device):
            out = forward_train(inputs, decode_actions=False, target=normalizer.normalize(target))
        return out.task_loss, {"task": out.task_loss.item(), "executed": out.gates.detach().float().mean().item()}

    result = run_loop(name, run_dir, {"student": student}, optimizer, cfg, len(data), step, stop_after, world=world,
                      on_step=on_step)
    return finish_training(result, student, world)


def progressive_route(selection: GreedySelection, num_layers: int, progress: float, warmup: float) -> list[int]:
    """The layers a statically pruned student runs at ``progress`` (0..1) of its fine-tuning when it
    reaches its set gradually, as stage 2's keep target does (``LossConfig.keep_target``): the layer
    count falls linearly from all of them to the selection's over the first ``warmup`` of the steps,
    dropping layers in the greedy order (each count's set is the one the greedy search kept)."""
    final = len(selection.layers)
    if warmup <= 0 or progress >= warmup:
        return list(selection.layers)
    count = round(num_layers + (final - num_layers) * progress / warmup)
    if count >= num_layers:
        return list(range(num_layers))
    return next(list(s.kept) for s in selection.trace if len(s.kept) == count)


def set_route(student: RoutedStudent, layers: list[int]) -> None:
    """Point a ``fixed`` router at ``layers``."""
    student.router.route.zero_()
    student.router.route[layers] = 1.0
