"""How layer skipping scales with the backbone: teacher vs routed student latency, FLOPs and
memory at batch 1 for a random-weight VLA of a given shape (default: 7B-shaped, 32 layers x
4096, bf16 on CUDA), at run-time keep ratios set with the ``max_layers`` cap.

Weights are random: this measures cost, not accuracy. On a CPU the script runs a reduced shape
(16 layers x 512, 112 px: about a minute on 2 cores) unless a shape or ``--full-size`` is given.

    python benchmarks/backbone_scaling.py --device cuda --json scaling.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from actdistill_ros.core.config import RouterConfig, TinyVLAConfig
from actdistill_ros.core.device import resolve_device, resolve_dtype
from actdistill_ros.core.model.flops import count_flops
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.model.tiny_vla import TinyVLA
from actdistill_ros.core.progress import progress_bar


def _time(fn, device, warmup: int, iters: int, bar) -> float:
    for _ in range(warmup):
        fn()
        bar.update()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
        bar.update()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--intermediate", type=int, default=11008)
    parser.add_argument("--image", type=int, default=224, help="image side; 14 px patches (256 tokens at 224)")
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.75, 0.5])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--json")
    parser.add_argument("--full-size", action="store_true", help="on a CPU too: the 7B shape (slow, ~26 GB)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    default_shape = (args.hidden, args.layers, args.intermediate, args.heads, args.image) == (4096, 32, 11008, 32, 224)
    if device.type == "cpu" and default_shape and not args.full_size:
        args.hidden, args.layers, args.intermediate, args.heads, args.image = 512, 16, 1376, 8, 112
        print("CPU: reduced shape 16 layers x 512, 112 px (--full-size for the 7B shape)", flush=True)
    dtype = resolve_dtype(args.dtype, device)
    cfg = TinyVLAConfig(image_size=args.image, patch_size=14, hidden_size=args.hidden, num_layers=args.layers,
                        num_heads=args.heads, intermediate_size=args.intermediate, max_text_tokens=32, chunk_size=8)
    torch.manual_seed(0)
    with torch.device(device):  # build in place: a 7B model never materialises on the host
        teacher = TinyVLA(cfg).to(dtype).eval()
        # the student shares the teacher's layers here: only routing cost and skipping are measured
        student = RoutedStudent(teacher, RouterConfig(init_bias=10.0)).to(dtype).eval()
    params = sum(p.numel() for p in teacher.parameters())
    inputs = {k: v.to(device) for k, v in teacher.prepare(
        np.zeros((args.image, args.image, 3), np.uint8), ["pick up the green cube"]).items()}

    rows = []
    again = args.iters // 2 or 1
    passes = args.warmup + args.iters + len(args.keep) * (args.warmup + args.iters + 2 + again)
    with torch.inference_mode(), progress_bar(passes, "teacher and student passes", unit="pass") as bar:
        teacher_ms = _time(lambda: teacher(inputs), device, args.warmup, args.iters, bar)
        teacher_flops = count_flops(lambda: teacher(inputs))
        for keep in args.keep:
            cap = max(1, round(keep * args.layers))
            student.set_budget(max_layers=cap)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            student_ms = _time(lambda: student.forward_routed(inputs), device, args.warmup, args.iters, bar)
            teacher_again = _time(lambda: teacher(inputs), device, 2, again, bar)
            flops = count_flops(lambda: student.forward_routed(inputs))
            rows.append({
                "keep_ratio": keep, "layers_executed": cap, "student_latency_ms": student_ms,
                "teacher_latency_ms": teacher_again, "speedup": teacher_again / student_ms,
                "flops_ratio": flops / teacher_flops,
                "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            })
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).replace("torch.", ""), "parameters": params,
        "tokens": (args.image // 14) ** 2 + cfg.max_text_tokens, "teacher_latency_ms": teacher_ms,
        "teacher_gflops": teacher_flops / 1e9, "config": vars(args), "rows": rows,
    }
    print(f"{result['device']} {result['dtype']}: {params / 1e9:.2f} B parameters, {result['tokens']} tokens, "
          f"teacher {teacher_ms:.2f} ms, {teacher_flops / 1e9:.1f} GFLOPs")
    print("| keep ratio | layers | student ms | teacher ms | speed-up | FLOPs ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['keep_ratio']:.2f} | {r['layers_executed']} | {r['student_latency_ms']:.2f} | "
              f"{r['teacher_latency_ms']:.2f} | {r['speedup']:.2f}x | {r['flops_ratio']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
