"""The torchrun entry point: teacher training or distillation on several processes (DDP/FSDP).

    torchrun --nproc-per-node 4 -m actdistill_ros.core.distributed distill \\
        --dataset runs/default/data --teacher runs/default/teacher --out runs/ddp --strategy ddp

A module of its own (the process group, sharding and gathering are
:mod:`actdistill_ros.core.training.parallel`) so that nothing the runs import imports the runs
back; see docs/distributed.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from .config import DistillConfig, TeacherTrainConfig
from .training.runs import run_distillation, run_teacher_training
from .typed_config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node N -m actdistill_ros.core.distributed",
        description="Teacher training or distillation on several processes (DDP/FSDP).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("distill", "teacher"):
        p = sub.add_parser(name)
        p.add_argument("--dataset", required=True)
        p.add_argument("--out", required=True)
        if name == "distill":
            p.add_argument("--teacher", required=True, help="teacher checkpoint directory")
        p.add_argument("--config", help="YAML/JSON file of DistillConfig (TeacherTrainConfig) fields")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        p.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    args = parser.parse_args(argv)
    overrides = [*args.set, f"distributed.strategy={args.strategy}"]
    if args.command == "teacher":
        cfg = load_config(TeacherTrainConfig, args.config, overrides)
        path = run_teacher_training(args.dataset, args.out, cfg)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"teacher: {path}")
        return 0
    cfg = load_config(DistillConfig, args.config, overrides)
    result = run_distillation(args.dataset, args.teacher, args.out, cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"student: {result.student_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
