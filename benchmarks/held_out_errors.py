"""A distillation job's student and baselines, their held-out action errors on *every* held-out sample.

Reports written before ``report_eval_samples`` took its samples spread over the held-out episodes
read the first 200 held-out samples only (about 17 episodes of the simulated arm), which put one
baseline 0.07 of the teacher's error off the whole held-out set. This rereads a finished job's
checkpoints on the whole split (the job's own split and ``max_train_episodes``), no training, no
timing: ``RUN/student`` and every ``RUN/baselines/<name>``.

    python benchmarks/held_out_errors.py --run runs/top2_baselines --teacher runs/shipped/distill/teacher \\
        --dataset runs/shipped/distill/dataset --json runs/top2_baselines/held_out_errors.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finished_job_args import add_finished_job_arguments, read_job, write_json  # benchmarks/ is the script's directory

from actdistill_ros.core.model.checkpoint import load_student
from actdistill_ros.core.training.stages import evaluate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_finished_job_arguments(parser)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    job = read_job(args)
    held_out = job.held_out
    teacher_mse = evaluate(job.teacher, held_out, routed=False)["action_mse"]
    checkpoints = {"student": args.run / "student"}
    baselines = args.run / "baselines"
    if baselines.is_dir():
        checkpoints.update({d.name: d for d in sorted(baselines.iterdir()) if (d / "config.json").is_file()})
    rows = {}
    for name, directory in checkpoints.items():
        metrics = evaluate(load_student(directory), held_out, routed=True)
        rows[name] = {"action_error_ratio": metrics["action_mse"] / teacher_mse,
                      "executed_layer_fraction": metrics.get("executed_layer_fraction")}
        print(f"{name}: {rows[name]['action_error_ratio']:.3f}x the teacher's held-out action error "
              f"({len(held_out)} samples)", flush=True)
    result = {"run": str(args.run), "teacher": str(job.teacher_dir), "dataset": str(job.dataset_dir),
              "held_out_samples": len(held_out), "teacher_action_mse": teacher_mse, "rows": rows}
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
