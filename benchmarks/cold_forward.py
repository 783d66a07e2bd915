"""How much does a forward pass cost after the CPU sat idle? The once-per-camera-frame cost.

A policy node makes one forward pass per camera frame and its inference thread sleeps in
between. On some machines (the 2-core VM of docs/results/README.md) a pass made after such a pause costs
well more than one made right after another pass, and that difference, not the node's own
code, is most of what the node adds to a back-to-back forward (benchmarks/policy_node_latency.py).
This measures it on the machine it runs on, for the student and the teacher in the same run: for
each policy and idle gap g, two warm passes, g ms idle, then the timed pass; the cells
interleaved, their order rotated every round (drift hits all alike).

    python benchmarks/cold_forward.py [--student DIR] [--teacher DIR | --no-teacher]
        [--gaps 0 1 2 5 10 20 50 100] [--idle sleep busy] [--rounds 40] [--threads 1] [--json out.json]

``--idle sleep``: the thread sleeps (as the node's worker waits for a frame); ``busy``: it spins
on the clock (the core stays awake and runs this thread; the caches keep only what the spin
touches). ``penalty_ms`` = median at g - median at the smallest gap, per policy and idle mode;
``speedup`` = teacher / student median at each gap: a penalty both pay lowers the speed-up a
node sees below the back-to-back one. Default: the shipped student and teacher, on the CPU; an
image of 224 x 224, resized by each policy as in the node.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from actdistill_ros.core.model.checkpoint import default_student_path, default_teacher_path
from actdistill_ros.core.policy import Policy, RoutedPolicy, TeacherPolicy, load_policy
from actdistill_ros.core.progress import progress_bar

INSTRUCTION = "pick up the red cube"


def idle(gap_s: float, how: str) -> None:
    """Leave the CPU to itself for ``gap_s``: asleep, or spinning on the clock."""
    if gap_s <= 0:
        return
    end = time.perf_counter() + gap_s
    if how == "sleep":
        time.sleep(gap_s)
    while time.perf_counter() < end:  # 'busy', and the remainder of an early wake-up
        pass


def measure(policies: dict[str, Policy], images: list[np.ndarray], gaps_ms: list[float], modes: list[str],
            rounds: int) -> dict[tuple[str, str, float], list[float]]:
    """ms of the pass after each (policy, idle mode, gap), ``rounds`` of each, the order rotated per
    round."""
    cells = [(name, mode, gap) for name in policies for mode in modes for gap in gaps_ms]
    times: dict[tuple[str, str, float], list[float]] = {cell: [] for cell in cells}
    with progress_bar(rounds * len(cells), "cold forward", unit="pass") as bar:
        for r in range(rounds):
            for k in range(len(cells)):
                name, mode, gap = cells[(r + k) % len(cells)]
                policy = policies[name]
                for i in range(2):  # warm: the second of two passes is as fast as a long run's
                    policy.act(images[(r + i) % len(images)], INSTRUCTION)
                idle(gap / 1e3, mode)
                start = time.perf_counter()
                policy.act(images[(r + 2) % len(images)], INSTRUCTION)
                times[(name, mode, gap)].append((time.perf_counter() - start) * 1e3)
                bar.update()
    return times


def rows(times: dict[tuple[str, str, float], list[float]]) -> list[dict]:
    """One row per cell; the penalty against the same policy's and idle mode's smallest gap."""
    out = []
    for (name, mode, gap), values in times.items():
        smallest = min(g for n, m, g in times if (n, m) == (name, mode))
        median = statistics.median(values)
        ordered = sorted(values)
        out.append({"policy": name, "idle": mode, "gap_ms": gap, "median_ms": median,
                    "p10_ms": ordered[len(ordered) // 10], "p90_ms": ordered[(9 * len(ordered)) // 10],
                    "min_ms": ordered[0], "penalty_ms": median - statistics.median(times[(name, mode, smallest)])})
    return out


def speedups(table: list[dict]) -> list[dict]:
    """Teacher / student median per idle mode and gap (empty without a teacher)."""
    by_cell = {(r["policy"], r["idle"], r["gap_ms"]): r["median_ms"] for r in table}
    return [{"idle": mode, "gap_ms": gap, "teacher_ms": by_cell[("teacher", mode, gap)], "student_ms": median,
             "speedup": by_cell[("teacher", mode, gap)] / median}
            for (name, mode, gap), median in by_cell.items() if name == "student" and ("teacher", mode, gap) in by_cell]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", type=Path, default=None, help="student checkpoint (default: the shipped one)")
    parser.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint (default: the shipped one)")
    parser.add_argument("--no-teacher", action="store_true", help="the student only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gaps", type=float, nargs="+", default=[0, 1, 2, 5, 10, 20, 50, 100],
                        help="idle gaps before the timed pass [ms]; the smallest is the reference")
    parser.add_argument("--idle", nargs="+", choices=["sleep", "busy"], default=["sleep", "busy"])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = leave as is)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.rounds < 10:
        parser.error(f"--rounds must be at least 10 (a p10 and p90 of fewer passes say nothing), got {args.rounds}")
    if any(g < 0 for g in args.gaps):
        parser.error(f"--gaps must be >= 0 ms, got {args.gaps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = {"student": args.student or default_student_path()}
    if not args.no_teacher:
        paths["teacher"] = args.teacher or default_teacher_path()
    policies = {name: load_policy(path, device=args.device) for name, path in paths.items()}
    for name, kind in (("student", RoutedPolicy), ("teacher", TeacherPolicy)):
        if name in policies and not isinstance(policies[name], kind):
            parser.error(f"--{name} {paths[name]} is not a {name} checkpoint")
    for policy in policies.values():
        policy.warmup(5)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(224, 224, 3), dtype=np.uint8) for _ in range(4)]
    table = rows(measure(policies, images, sorted(set(args.gaps)), args.idle, args.rounds))
    result = {
        "checkpoints": {name: "shipped" if path in (default_student_path(), default_teacher_path()) else str(path)
                        for name, path in paths.items()},
        "device": str(policies["student"].device),
        "layers_total": policies["student"].layers_total,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "machine": {"cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "rows": table,
        "speedups": speedups(table),
    }
    print(f"forward pass after an idle gap ({result['device']}, {result['torch_threads']} thread(s), "
          f"{args.rounds} rounds)")
    print("| policy | idle | gap ms | median ms | p10 ms | p90 ms | penalty ms |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['policy']} | {r['idle']} | {r['gap_ms']:g} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | "
              f"{r['p90_ms']:.2f} | {r['penalty_ms']:+.2f} |")
    if result["speedups"]:
        print("| idle | gap ms | teacher ms | student ms | speed-up |")
        print("|---|---|---|---|---|")
        for r in result["speedups"]:
            print(f"| {r['idle']} | {r['gap_ms']:g} | {r['teacher_ms']:.2f} | {r['student_ms']:.2f} | "
                  f"{r['speedup']:.2f}x |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
