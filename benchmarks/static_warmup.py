"""Does static pruning gain from the routed student's budget warm-up? (issue 10)

The task-loss-only top-1 student on reach + between, run with every input on one layer, read 1.084x
the teacher's error on every held-out sample, where the job's report had the ``static`` baseline on
that layer at 1.170x (on its first 200 held-out samples; this script found 1.102x on all of them,
README). The obvious difference: the student starts with every layer
and reaches its budget over the first ``budget_warmup`` of stage 2 (``LossConfig.keep_target``),
while the baseline runs its final layers from the first step. This fine-tunes the ``static``
baseline's set both ways, from the same teacher, data, optimiser settings and steps as the
distillation job in ``--run`` (its stage-2 settings, its greedy selection in
``runs/baseline_selection.json``): ``direct`` (the baseline's recipe, rerun here so that both
arms share this process) and ``warmup`` (``baselines.progressive_route``: the layer count falls
linearly from all to the set's over the warm-up, dropping layers in the greedy order, then the set
to the end). Both are benchmarked like the job's report (held-out episodes, the job's benchmark
sample count) and on every held-out sample.

    python benchmarks/static_warmup.py --run runs/between_top1 --teacher runs/between/distill/teacher \\
        --dataset runs/between/distill/dataset --out runs/static_warmup_top1 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from finished_job_args import add_finished_job_arguments, read_job  # benchmarks/ is the script's directory

from actdistill_ros.core.config import LossConfig, OptimConfig
from actdistill_ros.core.evaluation.bench import BenchConfig, benchmark
from actdistill_ros.core.model.checkpoint import save_student
from actdistill_ros.core.training.baselines import (
    GreedySelection,
    finetune_routed,
    fixed_route_student,
    progressive_route,
    set_route,
)
from actdistill_ros.core.training.stages import evaluate

ROW_KEYS = ("flops_ratio", "speedup", "action_error_ratio", "executed_layer_fraction")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_finished_job_arguments(parser, "a distillation job's output_dir with baselines (student/config.json, runs/)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--warmup", type=float, help="warm-up fraction (default: the job's loss.budget_warmup)")
    args = parser.parse_args()
    job = read_job(args)
    teacher, train, held_out, dataset_dir = job.teacher, job.train, job.held_out, job.dataset_dir
    optim = OptimConfig(**job.config["student"])
    warmup = args.warmup if args.warmup is not None else LossConfig(**job.config["loss"]).budget_warmup
    saved = json.loads((args.run / "runs" / "baseline_selection.json").read_text())
    selection = GreedySelection.from_dict(saved)
    bench_cfg = BenchConfig(latency_iters=30, curve=False)
    teacher_mse = evaluate(teacher, held_out, routed=False)["action_mse"]

    result = {"run": str(args.run), "layers": selection.layers, "warmup": warmup, "optim": job.config["student"],
              "teacher_held_out_mse": teacher_mse, "held_out_samples": len(held_out), "arms": {}}
    for arm in ("direct", "warmup"):
        student = fixed_route_student(teacher, selection.layers)
        seen: list[int] = []

        def schedule(step: int, total: int, student=student, seen=seen) -> None:
            route = progressive_route(selection, teacher.num_layers, step / total, warmup)
            set_route(student, route)
            seen.append(len(route))

        started = time.monotonic()
        tuned = finetune_routed(student, train, optim, args.out / "runs", f"static_{arm}",
                                on_step=schedule if arm == "warmup" else None)
        seconds = time.monotonic() - started
        student_dir = save_student(tuned.model.cpu(), args.out / arm)
        bench = benchmark(job.teacher_dir, student_dir, dataset_dir, bench_cfg)
        all_mse = evaluate(tuned.model, held_out, routed=True)["action_mse"]
        result["arms"][arm] = {**{k: bench[k] for k in ROW_KEYS}, "eval_samples": bench_cfg.eval_samples,
                               "action_error_ratio_all_held_out": all_mse / teacher_mse, "steps": tuned.steps,
                               "seconds": seconds, "layers_per_step": _runs(seen)}
        row = result["arms"][arm]
        print(f"{arm}: held-out action error {row['action_error_ratio']:.3f}x the teacher's "
              f"({bench_cfg.eval_samples} samples), {row['action_error_ratio_all_held_out']:.3f}x (all "
              f"{len(held_out)}); {tuned.steps} steps in {seconds:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "static_warmup.json").write_text(json.dumps(result, indent=2))
    return 0


def _runs(values: list[int]) -> list[list[int]]:
    """[[value, steps], ...] for each run of equal values (the warm-up's layer counts, compactly)."""
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return out


if __name__ == "__main__":
    sys.exit(main())
