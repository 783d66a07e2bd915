"""Teacher vs routed student in one process on the same held-out inputs; writes bench.json,
bench.md and the PNG plots (keep-ratio curve, per-layer gate frequency) to --out.

Same as ``actdistill bench``; defaults to the shipped checkpoints and a fresh synthetic
held-out set, so it runs with no arguments:

    python benchmarks/teacher_vs_student.py --out runs/bench_shipped
    python benchmarks/teacher_vs_student.py --teacher runs/default/teacher --student runs/default/student \\
        --dataset runs/default/data --out runs/default/bench
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from actdistill_ros.cli import main as cli_main
from actdistill_ros.core.data.synthetic import make_dataset
from actdistill_ros.core.model.checkpoint import default_student_path, default_teacher_path, load_teacher


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=default_teacher_path())
    parser.add_argument("--student", type=Path, default=default_student_path())
    parser.add_argument("--dataset", type=Path, help="default: 40 fresh synthetic episodes (seed 1)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", default="0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset
        if dataset is None:
            dataset = Path(tmp) / "data"
            size = load_teacher(args.teacher).cfg.image_size
            make_dataset(40, steps=8, image_size=size, seed=1).save(dataset)
        return cli_main(["bench", "--teacher", str(args.teacher), "--student", str(args.student), "--dataset",
                         str(dataset), "--device", args.device, "--threads", args.threads, "--out", str(args.out),
                         "--json", str(args.out / "bench.json")])


if __name__ == "__main__":
    sys.exit(main())
