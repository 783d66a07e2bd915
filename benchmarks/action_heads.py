"""Teacher vs routed student for each action head: regression, discrete tokens (autoregressive),
flow matching. Per head: train a TinyVLA teacher on synthetic demonstrations, distil it
(stage 1 probes, stage 2), then measure in one process on the same held-out inputs: batch-1
latency, FLOPs (counted by running), held-out action error, student-vs-teacher error, and the
head's share of the teacher's FLOPs (the part routing cannot skip). Writes action_heads.json
and action_heads.md to --out.

    python benchmarks/action_heads.py --quick --out docs/results/action_heads_quick --work /tmp/ah  # minutes, CPU
    python benchmarks/action_heads.py --out runs/action_heads --device cuda           # default size

Flow-matching actions use a fixed noise seed (the head's default), so teacher and student
are compared on identical noise and every number is reproducible.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from actdistill_ros.core.config import (
    MODEL_PRESETS,
    ActionHeadConfig,
    DistillConfig,
    GraphConfig,
    LossConfig,
    OptimConfig,
    TeacherTrainConfig,
)
from actdistill_ros.core.data.synthetic import make_dataset
from actdistill_ros.core.evaluation.bench import BenchConfig, benchmark, held_out_data
from actdistill_ros.core.model.checkpoint import load_teacher
from actdistill_ros.core.model.flops import component_flops
from actdistill_ros.core.training.runs import run_distillation, run_teacher_training
from actdistill_ros.core.typed_config import to_dict

HEADS = ("regression", "tokens", "flow")


@dataclasses.dataclass
class Preset:
    model: str
    head: ActionHeadConfig
    episodes: int
    steps: int
    teacher_epochs: int
    probe_epochs: int
    student_epochs: int
    batch_size: int
    bench: BenchConfig


PRESETS = {
    # a few minutes on a 2-core CPU for all three heads
    "quick": Preset(
        "test",
        ActionHeadConfig(width=64, layers=2, heads=4, flow_steps=10, flow_loss_repeats=4),
        episodes=100,
        steps=8,
        teacher_epochs=16,
        probe_epochs=1,
        student_epochs=4,
        batch_size=32,
        bench=BenchConfig(warmup=3, latency_iters=25, curve_latency_iters=5, eval_samples=120, flops_samples=8),
    ),
    # the benchmark size (GPU for training; the CPU bench then takes a while)
    "default": Preset(
        "default",
        ActionHeadConfig(width=128, layers=2, heads=4, flow_steps=10, flow_loss_repeats=4),
        episodes=1200,
        steps=8,
        teacher_epochs=40,
        probe_epochs=1,
        student_epochs=4,
        batch_size=32,
        bench=BenchConfig(),
    ),
}


def run_head(
    kind: str, preset: Preset, data_dir: Path, out: Path, device: str, bench_device: str, threads: int, seed: int
) -> dict:
    model = dataclasses.replace(MODEL_PRESETS[preset.model], action_head=dataclasses.replace(preset.head, kind=kind))
    started = time.perf_counter()
    teacher_dir = run_teacher_training(
        data_dir,
        out,
        TeacherTrainConfig(
            model=model,
            optim=OptimConfig(epochs=preset.teacher_epochs, batch_size=preset.batch_size, lr=1e-3, seed=seed),
            device=device,
        ),
    )
    trained = time.perf_counter()
    cfg = DistillConfig(
        graph=GraphConfig(graph_dim=64, semantic_dim=64),
        loss=LossConfig(keep_ratio=0.45),
        probe=OptimConfig(epochs=preset.probe_epochs, batch_size=preset.batch_size, seed=seed),
        student=OptimConfig(epochs=preset.student_epochs, batch_size=preset.batch_size, lr=3e-4, seed=seed),
        device=device,
    )
    distilled = run_distillation(data_dir, teacher_dir, out, cfg)
    done = time.perf_counter()
    bench_cfg = dataclasses.replace(preset.bench, device=bench_device, threads=threads)
    result = benchmark(teacher_dir, distilled.student_dir, data_dir, bench_cfg)
    # the head's share of the teacher's FLOPs: routing skips decoder layers, never the head
    teacher = load_teacher(teacher_dir).eval()
    data, _ = held_out_data(data_dir, teacher, bench_cfg.held_out_fraction, 1)
    with torch.no_grad():
        parts = component_flops(teacher, {k: v[:1] for k, v in data.inputs.items()})
    return {
        "head": kind,
        "teacher_latency_ms": result["teacher"]["latency_ms"],
        "student_latency_ms": result["student"]["latency_ms"],
        "speedup": result["speedup"],
        "teacher_gflops": result["teacher"]["flops"] / 1e9,
        "student_gflops": result["student"]["flops"] / 1e9,
        "flops_ratio": result["flops_ratio"],
        "head_flops_share": parts["head"] / parts["teacher_total"],
        "executed_layer_fraction": result["executed_layer_fraction"],
        "teacher_action_mse": result["teacher"]["action_mse"],
        "student_action_mse": result["student"]["action_mse"],
        "action_error_ratio": result["action_error_ratio"],
        "student_vs_teacher_mse": result["student"]["action_vs_teacher_mse"],
        "train_seconds": {"teacher": trained - started, "distill": done - trained},
        "curve": result["curve"],
        "bench": result,
    }


def markdown(report: dict) -> str:
    c = report["config"]
    lines = [
        f"TinyVLA `{c['model']}` preset ({c['num_layers']} layers x width {c['hidden_size']}), "
        f"{c['episodes']} synthetic episodes x {c['steps']} steps, teacher {c['teacher_epochs']} epochs, "
        f"stage 1 {c['probe_epochs']}, stage 2 {c['student_epochs']} epochs, target keep ratio 0.45; "
        f"bench on {c['bench_device']} ({c['threads']} threads), batch 1, held-out episodes. "
        f"Command: `{c['command']}`.",
        "",
        "| head | teacher ms | student ms | speed-up | FLOPs ratio | head share of teacher FLOPs | layers run "
        "| teacher MSE | student MSE | error ratio | student vs teacher MSE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["heads"]:
        lines.append(
            f"| {r['head']} | {r['teacher_latency_ms']:.2f} | {r['student_latency_ms']:.2f} | {r['speedup']:.2f}x | "
            f"{r['flops_ratio']:.3f} | {r['head_flops_share']:.3f} | {r['executed_layer_fraction']:.2f} | "
            f"{r['teacher_action_mse']:.4f} | {r['student_action_mse']:.4f} | {r['action_error_ratio']:.3f} | "
            f"{r['student_vs_teacher_mse']:.4f} |"
        )
    lines += ["", "MSE in normalised action units (1.0 = predicting the mean). Ratios are student/teacher."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="action_heads.json and action_heads.md go here")
    parser.add_argument(
        "--work", type=Path, help="data, checkpoints and run state (default: OUT/work); a rerun skips finished stages"
    )
    parser.add_argument("--quick", action="store_true", help="the small CPU preset (a few minutes)")
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    parser.add_argument("--device", default="auto", help="training device")
    parser.add_argument("--bench-device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the bench (0 = as is)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    preset_name = "quick" if args.quick else "default"
    preset = PRESETS[preset_name]
    torch.manual_seed(args.seed)
    work = args.work or args.out / "work"
    data_dir = work / "data"
    model = MODEL_PRESETS[preset.model]
    if not (data_dir / "dataset.json").exists():
        make_dataset(preset.episodes, steps=preset.steps, image_size=model.image_size, seed=args.seed).save(data_dir)
    heads = []
    for kind in args.heads:
        print(f"== {kind}", flush=True)
        heads.append(
            run_head(kind, preset, data_dir, work / kind, args.device, args.bench_device, args.threads, args.seed)
        )
    report = {
        "heads": heads,
        "config": {
            "preset": preset_name,
            "model": preset.model,
            "num_layers": model.num_layers,
            "hidden_size": model.hidden_size,
            "head": to_dict(preset.head),
            "episodes": preset.episodes,
            "steps": preset.steps,
            "teacher_epochs": preset.teacher_epochs,
            "probe_epochs": preset.probe_epochs,
            "student_epochs": preset.student_epochs,
            "batch_size": preset.batch_size,
            "bench_device": args.bench_device,
            "threads": args.threads,
            "seed": args.seed,
            "command": "python benchmarks/action_heads.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "action_heads.json").write_text(json.dumps(report, indent=2))
    (args.out / "action_heads.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
