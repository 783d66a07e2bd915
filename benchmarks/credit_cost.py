"""What measured layer credit costs beside a training step, by depth (``router.credit_layers``).

``router.credit: measured`` runs, per stage-2 step, ``credit_samples`` rows x (k + 1) routes
without gradients (k = every layer, or ``credit_layers``). This times that measurement against
the bulk of a stage-2 step, the student's training forward and backward over the batch (every
layer runs, mixed in by its gate), in one process, interleaved, for random-weight TinyVLAs of a
given width at several depths; the route of each row is its top ``keep x layers`` layers, as the
budget cut makes it. It reports ms and the ratio measurement / step: the share of training time
that measured credit adds (the rest of a real step, the probes' loss and the optimizer, only
makes the share smaller).

    python benchmarks/credit_cost.py [--depths 6 8 32] [--width 256] [--batch 32]
        [--samples 16] [--credit-layers 4] [--keep 0.375] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from finished_job_args import write_json  # benchmarks/ is the script's directory

from actdistill_ros.core.config import RouterConfig, TinyVLAConfig
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.model.tiny_vla import TinyVLA
from actdistill_ros.core.progress import progress_bar
from actdistill_ros.core.training.layer_credit import measure_layer_values, sample_credit_layers


def build(depth: int, width: int, batch: int):
    cfg = TinyVLAConfig(image_size=128, patch_size=16, hidden_size=width, num_layers=depth,
                        num_heads=max(1, width // 32), intermediate_size=width * 11 // 4, max_text_tokens=32,
                        chunk_size=8)
    torch.manual_seed(0)
    teacher = TinyVLA(cfg)
    student = RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=64, credit="measured")).train()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(batch, 128, 128, 3), dtype=np.uint8)
    inputs = teacher.prepare(images, ["pick up the green cube"] * batch)
    target = torch.randn(batch, cfg.chunk_size, 7)
    return student, inputs, target


def time_depth(depth: int, args: argparse.Namespace) -> dict:
    student, inputs, target = build(depth, args.width, args.batch)
    keep_layers = max(1, round(args.keep * depth))
    params = [p for p in student.parameters() if p.requires_grad]

    def step():
        out = student.forward_train(inputs, decode_actions=False, target=target, keep_ratio=args.keep,
                                    gate_gradient=False)
        out.task_loss.backward()
        for p in params:
            p.grad = None
        return out

    out = step()
    rows = torch.arange(args.samples)
    batch = out.batch.select(rows)
    scores = out.logits[rows].detach()
    route = torch.zeros_like(scores, dtype=torch.bool)
    route.scatter_(1, scores.topk(keep_layers, dim=1).indices, True)
    generator = torch.Generator().manual_seed(0)

    def measure(k: int):
        layers = sample_credit_layers(args.samples, depth, k, generator)
        return measure_layer_values(student.backbone, batch, route, target[rows], layers)

    fns = {"step": step, "measure_all": lambda: measure(0), "measure_k": lambda: measure(args.credit_layers)}
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(args.warmup + args.iters):
        for j in range(len(names)):  # rotated, so drift hits every function alike
            name = names[(i + j) % len(names)]
            start = time.perf_counter()
            fns[name]()
            if i >= args.warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    t = {name: statistics.median(v) for name, v in times.items()}
    return {"layers": depth, "route_layers": keep_layers, "step_ms": t["step"],
            "measure_all_ms": t["measure_all"], "measure_k_ms": t["measure_k"],
            "all_over_step": t["measure_all"] / t["step"], "k_over_step": t["measure_k"] / t["step"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[6, 8, 32])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32, help="the stage-2 batch (forward + backward)")
    parser.add_argument("--samples", type=int, default=16, help="router.credit_samples")
    parser.add_argument("--credit-layers", type=int, default=4, help="router.credit_layers for the bounded variant")
    parser.add_argument("--keep", type=float, default=0.375, help="keep ratio: each row runs its top keep x L")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = leave as is)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.samples > args.batch:
        parser.error(f"--samples {args.samples} is more than --batch {args.batch}")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with progress_bar(len(args.depths), desc="depths", unit="depth") as bar:
        for depth in args.depths:
            rows.append(time_depth(depth, args))
            bar.update()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {"width": args.width, "batch": args.batch, "credit_samples": args.samples,
              "credit_layers": args.credit_layers, "keep_ratio": args.keep, "iters": args.iters,
              "device": "cpu", "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "cpus": os.cpu_count(), "machine": platform.machine(), "load_average": list(load) if load else None,
              "rows": rows}
    print(f"width {args.width}, batch {args.batch}, {args.samples} credit samples, keep {args.keep}, "
          f"{result['torch_threads']} threads; load average {result['load_average']}; medians of {args.iters}")
    print(f"| layers | route | training step (fwd + bwd) ms | measure every layer ms (/ step) "
          f"| measure {args.credit_layers} layers ms (/ step) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layers']} | {r['route_layers']} | {r['step_ms']:.0f} | {r['measure_all_ms']:.0f} "
              f"({r['all_over_step']:.2f}) | {r['measure_k_ms']:.0f} ({r['k_over_step']:.2f}) |")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
