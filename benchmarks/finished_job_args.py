"""Command-line options of the benchmarks that reread a finished distillation job
(held_out_errors.py, static_warmup.py, gate_gradient_check.py): which job, torch's threads, and
where the result goes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from actdistill_ros.core.training.runs import FinishedJob, read_finished_job


def add_finished_job_arguments(parser: argparse.ArgumentParser, run_help: str = "a distillation job's output_dir"):
    parser.add_argument("--run", type=Path, required=True, help=run_help)
    parser.add_argument("--teacher", type=Path, help="its teacher (default: RUN/teacher)")
    parser.add_argument("--dataset", type=Path, help="its dataset (default: RUN/dataset)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")


def read_job(args: argparse.Namespace) -> FinishedJob:
    """The job named by the options above, read after torch's thread count is set."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return read_finished_job(args.run, args.teacher, args.dataset)


def write_json(path: Path | None, result: dict) -> None:
    """The result as JSON at ``path`` (its folder made), when the command was given one."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
