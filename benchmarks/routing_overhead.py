"""Does a skipped layer's time really disappear? Routed student vs its ideal, per keep ratio.

For a random-weight TinyVLA of a given shape (the student shares the teacher's layers; the router
passes every gate and the run-time cap ``max_layers`` sets the route), in one process, teacher
and student passes interleaved (drift and other load hit both):

    ideal_ms   = fixed_ms + (teacher_ms - fixed_ms) * layers_executed / layers_total
    efficiency = ideal_ms / student_ms

where ``fixed_ms`` is what both pay once whatever the route (embedding + final norm + action head,
timed on their own). Everything else the student pays (the router, reading the decisions, the
per-route bookkeeping) is overhead and lowers the efficiency; 1.0 means the skipped layers cost
exactly nothing. The teacher runs with the same ``--execution`` as the student (a compiled
student is compared with a compiled teacher).

Also timed: the same layers hard-wired (``static_ms``: the route's program called directly, no
router, no decisions, as a statically pruned model runs). ``efficiency_vs_static = static_ms /
student_ms`` is what routing itself costs; ``static_vs_ideal = ideal_ms / static_ms`` how far the
formula is from what those layers really cost (on a CPU a short stack costs more per layer than
the teacher's average, so no program, routed or not, reaches the formula's ideal there).

    python benchmarks/routing_overhead.py [--device cpu] [--shape shipped|default|medium|7b]
        [--execution eager|compile|cuda_graphs] [--batch 1] [--threads 1] [--json out.json]

Shapes: ``shipped`` = the student shipped in actdistill_ros/assets (6 layers x 128, 64 px);
``default`` = the default benchmark size (8 x 256, 128 px); ``medium`` = 12 x 512, 128 px (the
largest a CPU times in minutes: how the router's fixed cost fades as layers grow); ``7b`` = 32 x
4096, 224 px (a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from actdistill_ros.core.config import RouterConfig, TinyVLAConfig
from actdistill_ros.core.device import resolve_device, resolve_dtype
from actdistill_ros.core.model.flops import component_flops
from actdistill_ros.core.model.route_exec import Execution, RouteExecutor
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.model.tiny_vla import TinyVLA
from actdistill_ros.core.progress import progress_bar

SHAPES = {  # hidden, layers, heads, intermediate, image, patch
    "shipped": (128, 6, 4, 256, 64, 8),
    "default": (256, 8, 8, 688, 128, 16),
    "medium": (512, 12, 8, 1376, 128, 16),  # between default and 7b: how the router's fixed cost fades with size
    "7b": (4096, 32, 32, 11008, 224, 14),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict, device: torch.device, warmup: int, iters: int,
                desc: str = "timing") -> dict[str, list[float]]:
    """ms of every call of each function, called in turn so that drift hits all of them alike. The
    order rotates every round: on a CPU a call right after the teacher (which sweeps every layer's
    weights through the caches) was once measured 0.3 ms slower at the default shape; rotated, no
    function always sits in that seat."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    with progress_bar(warmup + iters, desc, unit="round") as bar:
        for i in range(warmup + iters):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                fn = fns[name]
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                if i >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
            bar.update()
    return times


def row(times: dict[str, list[float]], stat, executed: float, num_layers: int, router_share: float) -> dict[str, float]:
    """``router_share``: the router's FLOPs over all decoder layers' FLOPs. ``ideal_with_router_ms``
    adds the router's work at the layers' speed: the best a router of this size could cost; what
    is left between it and the student is execution overhead (dispatch, decisions, bookkeeping)."""
    t = {name: stat(v) for name, v in times.items()}
    fixed = t["embed"] + t["head"]
    ideal = fixed + (t["teacher"] - fixed) * executed / num_layers
    with_router = ideal + (t["teacher"] - fixed) * router_share
    return {"teacher_ms": t["teacher"], "student_ms": t["student"], "ideal_ms": ideal, "fixed_ms": fixed,
            "router_ms": t["router"], "efficiency": ideal / t["student"], "speedup": t["teacher"] / t["student"],
            "ideal_speedup": t["teacher"] / ideal, "ideal_with_router_ms": with_router,
            "efficiency_with_router": with_router / t["student"],
            "static_ms": t["static"], "efficiency_vs_static": t["static"] / t["student"],
            "static_vs_ideal": ideal / t["static"]}


def build(shape: str, device: torch.device, dtype: torch.dtype, batch: int):
    hidden, layers, heads, inter, image, patch = SHAPES[shape]
    cfg = TinyVLAConfig(image_size=image, patch_size=patch, hidden_size=hidden, num_layers=layers, num_heads=heads,
                        intermediate_size=inter, max_text_tokens=32, chunk_size=8)
    torch.manual_seed(0)
    with torch.device(device):
        teacher = TinyVLA(cfg).to(dtype).eval()
        student = RoutedStudent(teacher, RouterConfig(init_bias=10.0)).to(dtype).eval()
        # equal gates for every input: the cap picks the same layers for the whole batch (this
        # measures what skipping saves; mixed routes in one batch are test_core_route_exec's concern)
        student.router.gate_head.weight.data.zero_()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(batch, image, image, 3), dtype=np.uint8)
    inputs = {k: v.to(device) for k, v in teacher.prepare(images, ["pick up the green cube"] * batch).items()}
    return teacher, student, inputs


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what would measure something else than asked (exit 2, the argument named)."""
    bad_keep = [k for k in args.keep if not 0.0 < k <= 1.0]
    if bad_keep:
        parser.error(f"--keep ratios must be in (0, 1], got {bad_keep}")
    if args.iters < 3:
        parser.error(f"--iters must be at least 3 (a median of fewer passes says nothing), got {args.iters}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0 (0 = leave as is), got {args.threads}")
    if args.bandwidth_tbs < 0:
        parser.error(f"--bandwidth-tbs must be >= 0, got {args.bandwidth_tbs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default: shipped on CPU, 7b on CUDA")
    parser.add_argument("--execution", default="eager", choices=[e.value for e in Execution])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = leave as is)")
    parser.add_argument("--bandwidth-tbs", type=float, default=0.0,
                        help="device memory bandwidth [TB/s] (H200: 4.8): also report the teacher against the time "
                             "to read its weights once, the batch-1 limit of a memory-bound forward")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, device)
    except ValueError as exc:
        parser.error(str(exc))
    if args.device.strip().lower().startswith("cuda") and device.type != "cuda":
        parser.error(f"--device {args.device}: CUDA is not available here (a benchmark does not fall back to the CPU)")
    shape = args.shape or ("7b" if device.type == "cuda" else "shipped")
    teacher, student, inputs = build(shape, device, dtype, args.batch)
    execution = Execution.parse(args.execution)
    try:
        student.set_execution(execution)
        student.executor.check_device(device)
    except ValueError as exc:  # cuda_graphs on a CPU
        parser.error(str(exc))
    full = RouteExecutor(teacher, execution)  # the teacher: the all-layer route, same execution
    num_layers = teacher.num_layers
    all_layers = torch.ones(args.batch, num_layers, dtype=torch.bool)
    with torch.inference_mode():
        flops = component_flops(teacher, inputs, student)
    router_share = flops["router"] / sum(flops["layers"])

    def teacher_pass():
        return full.run(teacher.embed(inputs), all_layers)

    with torch.inference_mode():
        batch = teacher.embed(inputs)
        last = teacher.run_layers(batch)[0]
        t_compile = time.perf_counter()
        with progress_bar(1 + len(args.keep), f"first passes ({execution.value})", unit="route") as bar:
            teacher_pass()
            bar.update()
            for keep in args.keep:  # every route compiled/captured before any timing
                student.set_budget(max_layers=max(1, round(keep * num_layers)))
                student.forward_routed(inputs)
                bar.update()
        compile_s = time.perf_counter() - t_compile
        rows = []
        for keep in args.keep:
            cap = max(1, round(keep * num_layers))
            student.set_budget(max_layers=cap)
            executed = float(student.forward_routed(inputs).executed.float().sum(1).mean())
            # the fixed parts (embedding, head) and the router timed beside each pair, not once
            route = student.forward_routed(inputs).executed.cpu()
            times = interleaved({"teacher": teacher_pass, "student": lambda: student.forward_routed(inputs),
                                 # the same layers, hard-wired: no router, no decisions (static pruning)
                                 "static": lambda route=route: full.run(teacher.embed(inputs), route),
                                 "embed": lambda: teacher.embed(inputs), "head": lambda: teacher.head(last, batch),
                                 "router": lambda: student.inference_probs(batch)}, device, args.warmup, args.iters,
                                desc=f"keep {keep:g}")
            rows.append({"keep_ratio": keep, "layers_executed": executed,
                         **row(times, statistics.median, executed, num_layers, router_share),
                         # the least disturbed pass of each: on a shared machine, the cost without the others
                         "min": row(times, min, executed, num_layers, router_share)})
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {
        "shape": shape, "layers_total": num_layers, "hidden_size": teacher.hidden_size,
        "tokens": int(batch.hidden.shape[1]), "batch": args.batch, "execution": execution.value,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "machine": platform.machine(),
        "load_average": list(load) if load else None, "warm_up_and_compile_s": compile_s,
        "compiled_programs": student.executor.compiles, "rows": rows,
        "router_flops_share_of_layers": router_share,
        "weights_gb": sum(p.numel() * p.element_size() for p in teacher.parameters()) / 1e9,
    }
    if args.bandwidth_tbs > 0:
        result["bandwidth_limit_ms"] = result["weights_gb"] / (args.bandwidth_tbs * 1e3) * 1e3
        result["teacher_vs_bandwidth_limit"] = rows[0]["teacher_ms"] / result["bandwidth_limit_ms"]
    print(f"{shape}: {num_layers} layers x {teacher.hidden_size}, {result['tokens']} tokens, batch {args.batch}, "
          f"{result['device']} {result['dtype']}, {result['torch_threads']} threads, execution {execution.value} "
          f"(warm-up incl. compile {compile_s:.1f} s); load average {result['load_average']}; medians "
          "(in brackets: the fastest pass of each)")
    print(f"router FLOPs: {router_share:.2%} of the decoder layers'")
    print("| keep | layers | teacher ms | student ms | ideal ms | same layers, no router ms | router ms | efficiency "
          "| efficiency vs no router | speed-up | ideal speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["min"]
        print(f"| {r['keep_ratio']:.2f} | {r['layers_executed']:.2f} | {r['teacher_ms']:.3f} ({m['teacher_ms']:.3f}) | "
              f"{r['student_ms']:.3f} ({m['student_ms']:.3f}) | {r['ideal_ms']:.3f} ({m['ideal_ms']:.3f}) | "
              f"{r['static_ms']:.3f} ({m['static_ms']:.3f}) | {r['router_ms']:.3f} | "
              f"{r['efficiency']:.3f} ({m['efficiency']:.3f}) | "
              f"{r['efficiency_vs_static']:.3f} ({m['efficiency_vs_static']:.3f}) | {r['speedup']:.2f}x | "
              f"{r['ideal_speedup']:.2f}x |")
    if args.bandwidth_tbs > 0:
        print(f"weights {result['weights_gb']:.2f} GB: read once at {args.bandwidth_tbs:g} TB/s in "
              f"{result['bandwidth_limit_ms']:.2f} ms; teacher {result['teacher_vs_bandwidth_limit']:.2f}x that")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
