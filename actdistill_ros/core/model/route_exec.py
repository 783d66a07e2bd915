"""Route-specialised execution of the routed student: one program per route signature.

A route is the tuple of decoder layers a sample runs. Once the router has decided, the rest of
the pass (those layers, the final norm, the action head) is a fixed program; running it layer by
layer from Python pays dispatch and bookkeeping per layer. A batch on one route (batch 1 always)
runs as one program. A mixed batch runs eagerly layer by layer on the rows that keep each layer
(each layer's weights read once for the batch: what a memory-bound GPU wants), or, compiled, one
program per distinct route on the rows that share it (gather/scatter of the input states and the
action chunk only, but a layer's weights read once per route that uses it).

How a route program runs (:class:`Execution`, a documented, typed option):

* ``eager``: the layers in Python, no compilation (the reference; any device; the default,
  because on a small CPU model torch.compile's gain is within noise and its compile time is
  seconds per route, see docs/results/README.md).
* ``compile``: ``torch.compile`` of each route program, kept in a bounded LRU cache
  (``cache_size`` routes; the learned router uses a handful of routes in practice). Each route
  gets its own code object, so dynamo's guard cache is per route and an evicted route frees its
  compiled code.
* ``cuda_graphs``: each (route, input shapes) captured once as a CUDA graph (static input
  buffers, replayed with one copy in and one out): a launch-bound GPU forward becomes one launch.
  CUDA only; on a CPU it is refused.

The route decision itself must reach the host (it picks which program runs): one transfer of
the [B, L] decisions plus a finiteness flag, never one per layer.
"""

from __future__ import annotations

import enum
import types
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .teacher import TokenBatch, VLATeacher


class Execution(str, enum.Enum):
    EAGER = "eager"
    COMPILE = "compile"
    CUDA_GRAPHS = "cuda_graphs"

    @classmethod
    def parse(cls, value: str | Execution) -> Execution:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown execution {value!r}: use one of {names}") from None


@dataclass
class RouteGroup:
    route: tuple[int, ...]  # layers run, ascending
    rows: list[int]  # batch rows that take it


def group_routes(keep: torch.Tensor) -> list[RouteGroup]:
    """Host-side bool [B, L] decisions -> the distinct routes and the rows that take each."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, decision in enumerate(keep.tolist()):
        route = tuple(i for i, k in enumerate(decision) if k)
        groups.setdefault(route, []).append(row)
    return [RouteGroup(route, rows) for route, rows in groups.items()]


def _route_program(backbone: VLATeacher, route: tuple[int, ...]) -> Callable[[torch.Tensor, TokenBatch], torch.Tensor]:
    """The pass after routing for one route: its layers in order, then norm + head."""

    def run(hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        for index in route:
            hidden = backbone.run_layer(index, hidden, batch)
        return backbone.head(hidden, batch)

    # a code object of its own per route: torch.compile keys its guard cache on the code object,
    # so routes do not share (and exhaust) one recompile budget, and an evicted route's code goes
    name = "route_" + ("_".join(map(str, route)) or "none")
    code = run.__code__.replace(co_name=name, co_qualname=name) if hasattr(run.__code__, "co_qualname") \
        else run.__code__.replace(co_name=name)
    return types.FunctionType(code, run.__globals__, name, run.__defaults__, run.__closure__)


def _batch_tensors(batch: TokenBatch) -> list[torch.Tensor]:
    out = [batch.hidden, batch.vision_mask, batch.text_mask, batch.attention_mask]

    def walk(value) -> None:
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, tuple | list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(batch.layer_kwargs)
    return out


def _clone_batch(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, TokenBatch):
        return TokenBatch(*(_clone_batch(getattr(value, f)) for f in
                            ("hidden", "vision_mask", "text_mask", "attention_mask", "layer_kwargs")))
    if isinstance(value, tuple):
        return tuple(_clone_batch(v) for v in value)
    if isinstance(value, list):
        return [_clone_batch(v) for v in value]
    if isinstance(value, dict):
        return {k: _clone_batch(v) for k, v in value.items()}
    return value


class _GraphedRoute:
    """One route program captured as a CUDA graph for one set of input shapes."""

    def __init__(self, program: Callable, hidden: torch.Tensor, batch: TokenBatch) -> None:
        self.hidden = hidden.clone()
        self.batch = _clone_batch(batch)
        self.inputs = [self.hidden, *_batch_tensors(self.batch)]
        side = torch.cuda.Stream(device=hidden.device)
        side.wait_stream(torch.cuda.current_stream(hidden.device))
        with torch.cuda.stream(side):  # warm-up off the capture (lazy inits, cuBLAS workspaces)
            for _ in range(2):
                program(self.hidden, self.batch)
        torch.cuda.current_stream(hidden.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = program(self.hidden, self.batch)

    def __call__(self, hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        for static, value in zip(self.inputs, [hidden, *_batch_tensors(batch)], strict=True):
            if static.data_ptr() != value.data_ptr():
                static.copy_(value)
        self.graph.replay()
        return self.out.clone()


def _shape_key(hidden: torch.Tensor, batch: TokenBatch) -> tuple:
    return tuple((tuple(t.shape), t.dtype) for t in [hidden, *_batch_tensors(batch)])


class RouteExecutor:
    """Runs a routed batch route by route; programs cached per route (bounded LRU)."""

    def __init__(self, backbone: VLATeacher, execution: Execution | str = Execution.EAGER, cache_size: int = 8,
                 compile_backend: str = "inductor") -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.backbone = backbone
        self.execution = Execution.parse(execution)
        self.cache_size = int(cache_size)
        self.compile_backend = compile_backend  # torch.compile backend (tests use aot_eager: no C++ build)
        self._programs: OrderedDict[tuple, Callable] = OrderedDict()
        self.compiles = 0  # programs built (compiled or captured): a cache miss each
        self.evictions = 0

    def check_device(self, device: torch.device) -> None:
        if self.execution == Execution.CUDA_GRAPHS and device.type != "cuda":
            raise ValueError(f"execution 'cuda_graphs' needs a CUDA device, the model is on {device}")

    def _program(self, route: tuple[int, ...], hidden: torch.Tensor, batch: TokenBatch) -> Callable:
        if self.execution == Execution.EAGER:
            return _route_program(self.backbone, route)  # nothing to cache: building it is free
        key = (route, _shape_key(hidden, batch)) if self.execution == Execution.CUDA_GRAPHS else (route,)
        program = self._programs.get(key)
        if program is not None:
            self._programs.move_to_end(key)
            return program
        plain = _route_program(self.backbone, route)
        if self.execution == Execution.COMPILE:
            program = torch.compile(plain, backend=self.compile_backend, dynamic=None)
        else:
            self.check_device(hidden.device)
            program = _GraphedRoute(plain, hidden, batch)
        self.compiles += 1
        self._programs[key] = program
        while len(self._programs) > self.cache_size:
            self._programs.popitem(last=False)
            self.evictions += 1
        return program

    def run_route(self, batch: TokenBatch, route: tuple[int, ...]) -> torch.Tensor:
        """-> normalised action chunks [B, H, A]: every row on one ``route`` (layers, ascending)."""
        return self._program(route, batch.hidden, batch)(batch.hidden, batch)

    def run(self, batch: TokenBatch, keep_host: torch.Tensor) -> torch.Tensor:
        """-> normalised action chunks [B, H, A]; ``keep_host`` bool [B, L] on the host."""
        groups = group_routes(keep_host)
        if len(groups) == 1:  # the usual case (batch 1, or one shared route): no gather, no scatter
            return self.run_route(batch, groups[0].route)
        if self.execution == Execution.EAGER:
            return self._run_by_layer(batch, keep_host)
        actions = None
        for group in groups:
            rows = torch.tensor(group.rows, device=batch.hidden.device)
            sub = batch.select(rows)
            out = self._program(group.route, sub.hidden, sub)(sub.hidden, sub)
            if actions is None:
                actions = out.new_empty((batch.hidden.shape[0], *out.shape[1:]))
            actions[rows] = out
        return actions

    def _run_by_layer(self, batch: TokenBatch, keep_host: torch.Tensor) -> torch.Tensor:
        """A mixed batch, eagerly: each layer once on the rows that keep it. Every layer's weights
        are read once for the whole batch (route by route they would be read once per route that
        uses the layer: what a memory-bound GPU pays for), at one gather/scatter per layer."""
        hidden = batch.hidden
        size = hidden.shape[0]
        for index in range(keep_host.shape[1]):
            rows = keep_host[:, index].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            if rows.numel() == size:
                hidden = self.backbone.run_layer(index, hidden, batch)
            else:
                rows = rows.to(hidden.device)
                hidden = hidden.clone()
                hidden[rows] = self.backbone.run_layer(index, hidden[rows], batch.select(rows))
        return self.backbone.head(hidden, batch)
