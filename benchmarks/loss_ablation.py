"""Which parts of the ActDistill loss matter: the student with each part removed, same teacher, same
data, same stage-2 budget, one command.

Variants (stage 2 only; stage 1, the probes and the teacher's records, is trained once and shared):
  full        the whole objective (METHOD.md) with the budget tracked by the router threshold
  no_graph    alpha = 0: no semantic / relational alignment with the teacher's graph probes
  no_dual     beta = 0: no layer-wise action terms (to ground truth, teacher layer, previous layer)
  no_weights  gamma = 0: every layer weighs the same in the alpha and beta sums
  no_budget   neither the budget term nor the tracked threshold (the paper's router: balance only)

Each variant is benchmarked on the held-out episodes (FLOPs, latency, action error against the
teacher's, routes). With --episodes N each also drives the simulated arm in closed loop (N seeded
episodes per task, over DDS, as `actdistill eval`).

    python benchmarks/loss_ablation.py --dataset runs/sim_job/distill/dataset \\
        --teacher runs/sim_job/distill/teacher --out runs/loss_ablation --episodes 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from actdistill_ros.core.config import DistillConfig, GraphConfig, OptimConfig
from actdistill_ros.core.evaluation.bench import BenchConfig, benchmark
from actdistill_ros.core.training.runs import run_distillation
from actdistill_ros.core.typed_config import to_dict

STAGE1_FILES = ("probe_state.pt", "probe_done.json", "probe_metrics.jsonl", "teacher_records.safetensors")


def variants(base: DistillConfig) -> dict[str, DistillConfig]:
    loss = base.loss
    return {
        "full": base,
        "no_graph": replace(base, loss=replace(loss, alpha=0.0)),
        "no_dual": replace(base, loss=replace(loss, beta=0.0)),
        "no_weights": replace(base, loss=replace(loss, gamma=0.0)),
        "no_budget": replace(base, loss=replace(loss, budget=0.0, budget_control=False)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="episode dataset (its held-out split is used)")
    parser.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep-ratio", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=2, help="stage-2 epochs of every variant")
    parser.add_argument("--probe-epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--episodes", type=int, default=0, help="closed-loop episodes per task (0: offline only)")
    parser.add_argument("--only", nargs="*", help="run only these variants")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base = DistillConfig(graph=GraphConfig(graph_dim=64, semantic_dim=64), device=args.device,
                         probe=OptimConfig(epochs=args.probe_epochs, lr=1e-3),
                         student=OptimConfig(epochs=args.epochs, lr=3e-4))
    base = replace(base, loss=replace(base.loss, keep_ratio=args.keep_ratio))
    chosen = {k: v for k, v in variants(base).items() if not args.only or k in args.only}
    results: dict[str, dict] = {}
    results_path = args.out / "loss_ablation.json"
    if results_path.is_file():
        results = json.loads(results_path.read_text()).get("variants", {})
    shared = args.out / "full" / "runs"
    for name, cfg in chosen.items():
        if name in results:
            print(f"{name}: done earlier")
            continue
        out = args.out / name
        runs = out / "runs"
        if name != "full" and (shared / "probe_done.json").is_file() and not (runs / "probe_done.json").is_file():
            runs.mkdir(parents=True, exist_ok=True)
            for file in STAGE1_FILES:
                if (shared / file).is_file():
                    shutil.copy2(shared / file, runs / file)
        started = time.monotonic()
        distilled = run_distillation(args.dataset, args.teacher, out, cfg)
        seconds = time.monotonic() - started
        bench = benchmark(args.teacher, distilled.student_dir, args.dataset,
                          BenchConfig(device=args.device, latency_iters=30, curve=False, eval_samples=0))
        row = {"flops_ratio": bench["flops_ratio"], "speedup": bench["speedup"],
               "action_error_ratio": bench["action_error_ratio"],
               "executed_layer_fraction": bench["executed_layer_fraction"],
               "layer_frequency": bench["layer_frequency"], "distinct_routes": bench["distinct_routes"],
               "warnings": distilled.metrics.get("warnings", []), "distill_seconds": seconds,
               "loss": to_dict(cfg.loss)}
        if args.episodes:
            row["closed_loop"] = closed_loop(args.teacher, distilled.student_dir, args, out / "eval")
        results[name] = row
        print(f"{name}: {json.dumps({k: v for k, v in row.items() if k != 'loss'})}", flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps({"variants": results, "config": vars(args) | {
            "dataset": str(args.dataset), "teacher": str(args.teacher), "out": str(args.out),
            "base": to_dict(base), "machine": bench["config"]["machine"],
            "torch_threads": torch.get_num_threads()}}, indent=2, default=str))
    (args.out / "loss_ablation.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def closed_loop(teacher: Path, student: Path, args, out: Path) -> dict:
    from actdistill_ros.sim_ros.closed_loop import EvalConfig, evaluate_checkpoint

    cfg = EvalConfig(episodes=args.episodes, seed=0, device=args.device)
    result = evaluate_checkpoint(student, cfg, out / "logs", label="student")
    return {"success_rate": result["success_rate"], "tasks": {t: r["success_rate"] for t, r in result["tasks"].items()},
            "executed_layer_fraction": result["executed_layer_fraction"]}


def markdown(results: dict[str, dict]) -> str:
    lines = ["| variant | layers run | FLOPs ratio | speed-up | held-out action error ratio | distinct routes "
             "| closed-loop success |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        success = f"{r['closed_loop']['success_rate']:.0%}" if "closed_loop" in r else "-"
        lines.append(f"| {name} | {r['executed_layer_fraction']:.3f} | {r['flops_ratio']:.3f} | {r['speedup']:.2f}x | "
                     f"{r['action_error_ratio']:.3f} | {r['distinct_routes']} | {success} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
