"""Why does a fixed route beat the learned router? Separate the routes from the objective.

Takes a distilled student (learned router, after stage 2), freezes its router and fine-tunes the
backbone with the action head's task loss alone, the recipe and budget of the `static` and `random`
baselines (core/baselines.py: `finetune_routed`, the student's stage-2 optimiser settings). If the
held-out error then falls to the baselines' level, the routes were not the problem: the stage-2
objective was. The router reads the embedded inputs, which the fine-tuning also changes, so the
executed fraction can drift: it is reported beside the error. ``--freeze-embedding`` keeps every
part of the backbone before the decoder layers as it is (TinyVLA: vision stem, text embedding),
so that the routes cannot move at all.

First, without any training, the same student at a uniform depth: every sample runs its own
``k`` highest-scoring layers (``min_layers = max_layers = k``) instead of as many as pass the
threshold. If that beats the routed student at the same mean depth, the router's per-input choice
of *how many* layers to run is what costs accuracy. ``--depth-only`` stops there.

    python benchmarks/router_diagnostic.py --run runs/shipped/distill --out runs/router_diagnostic --threads 1
    python benchmarks/router_diagnostic.py --run runs/shipped/distill --out runs/router_diagnostic_frozen \
        --freeze-embedding --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from actdistill_ros.core.baselines import finetune_routed
from actdistill_ros.core.bench import BenchConfig, benchmark
from actdistill_ros.core.checkpoint import load_student, load_teacher, save_student
from actdistill_ros.core.config import OptimConfig
from actdistill_ros.core.pipeline import _split
from actdistill_ros.core.training import evaluate

AFTER_THE_LAYERS = ("layers", "final_norm", "action_head", "normalizer", "rotary")
ROW_KEYS = ("flops_ratio", "speedup", "action_error_ratio", "executed_layer_fraction", "layer_frequency",
            "distinct_routes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True,
                        help="a distillation job's output_dir (teacher/, student/, dataset/)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--freeze-embedding", action="store_true",
                        help="train only the decoder layers and the head: the router's inputs, and so its routes, stay")
    parser.add_argument("--depth-only", action="store_true", help="only the uniform-depth table (no fine-tuning)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    student_dir, teacher_dir, dataset_dir = args.run / "student", args.run / "teacher", args.run / "dataset"
    job = json.loads((student_dir / "config.json").read_text())["distillation"]["config"]
    optim = OptimConfig(**job["student"])
    teacher = load_teacher(teacher_dir)
    train, held_out = _split(dataset_dir, job["held_out_fraction"], teacher, job.get("max_train_episodes", 0))
    student = load_student(student_dir).to(args.device)
    student.router.requires_grad_(False)
    depth = uniform_depth(student, teacher, held_out, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "uniform_depth.json").write_text(json.dumps(depth, indent=2))
    for row in depth["rows"]:
        print(f"{row['route']}: layers run {row['executed_layer_fraction']:.3f}, held-out action error "
              f"{row['action_error_ratio']:.3f}x the teacher's")
    if args.depth_only:
        return 0

    bench_cfg = BenchConfig(device=args.device, latency_iters=30, curve=False, eval_samples=0)
    before = benchmark(teacher_dir, student_dir, dataset_dir, bench_cfg)
    started = time.monotonic()
    frozen = tuple(module for name, module in student.backbone.named_children()
                   if args.freeze_embedding and name not in AFTER_THE_LAYERS)
    result = finetune_routed(student, train, optim, args.out / "runs", "task_finetune", frozen=frozen)
    seconds = time.monotonic() - started
    tuned_dir = save_student(result.model.cpu(), args.out / "student")
    after = benchmark(teacher_dir, tuned_dir, dataset_dir, bench_cfg)

    report = {"before": {k: before[k] for k in ROW_KEYS}, "after_task_finetune": {k: after[k] for k in ROW_KEYS},
              "frozen": [name for name, module in student.backbone.named_children() if module in frozen],
              "finetune_steps": result.steps, "finetune_seconds": seconds, "optim": job["student"],
              "machine": after["config"]["machine"], "torch_threads": torch.get_num_threads()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "router_diagnostic.json").write_text(json.dumps(report, indent=2))
    for name in ("before", "after_task_finetune"):
        row = report[name]
        print(f"{name}: layers run {row['executed_layer_fraction']:.3f}, FLOPs {row['flops_ratio']:.3f}, "
              f"held-out action error {row['action_error_ratio']:.3f}x the teacher's, {row['distinct_routes']} routes")
    return 0


def uniform_depth(student, teacher, held_out, device: str) -> dict:
    """The routed student as trained, then at every uniform depth k (each sample's own top k)."""
    teacher_mse = evaluate(teacher.to(device), held_out, routed=False)["action_mse"]
    rows = []
    trained = (student.min_layers, student.max_layers)
    for k in [None, *range(1, student.num_layers + 1)]:
        student.min_layers, student.max_layers = trained if k is None else (k, k)
        result = evaluate(student, held_out, routed=True)
        rows.append({"route": "as trained (threshold)" if k is None else f"top {k} per sample", "layers": k,
                     "executed_layer_fraction": result["executed_layer_fraction"],
                     "action_mse": result["action_mse"], "action_error_ratio": result["action_mse"] / teacher_mse})
    student.min_layers, student.max_layers = trained
    return {"teacher_action_mse": teacher_mse, "held_out_samples": len(held_out), "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
