"""How much does a forward pass cost after the CPU sat idle? The once-per-camera-frame cost.

A policy node makes one forward pass per camera frame and its inference thread sleeps in
between. On some machines (the 2-core VM of README Results) a pass made after such a pause costs
well more than one made right after another pass, and that difference, not the node's own
code, is most of what the node adds to a back-to-back forward (benchmarks/policy_node_latency.py).
This measures it on the machine it runs on: for each idle gap g, two warm passes, g ms idle, then
the timed pass; the gaps interleaved, their order rotated every round (drift hits all alike).

    python benchmarks/cold_forward.py [--checkpoint DIR] [--gaps 0 1 2 5 10 20 50 100]
        [--idle sleep busy] [--rounds 40] [--threads 1] [--json out.json]

``--idle sleep``: the thread sleeps (as the node's worker waits for a frame); ``busy``: it spins
on the clock (the core stays awake and runs this thread; the caches keep only what the spin
touches). ``penalty_ms`` = median at g - median at gap 0. The policy is the shipped student by
default, on the CPU; an image of 224 x 224, resized by the policy as in the node.
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

from actdistill_ros.core.policy import RoutedPolicy
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


def measure(policy: RoutedPolicy, images: list[np.ndarray], gaps_ms: list[float], modes: list[str],
            rounds: int) -> dict[tuple[str, float], list[float]]:
    """ms of the pass after each (idle mode, gap), ``rounds`` of each, the order rotated per round."""
    cells = [(mode, gap) for mode in modes for gap in gaps_ms]
    times: dict[tuple[str, float], list[float]] = {cell: [] for cell in cells}
    with progress_bar(rounds * len(cells), "cold forward", unit="pass") as bar:
        for r in range(rounds):
            for k in range(len(cells)):
                mode, gap = cells[(r + k) % len(cells)]
                for i in range(2):  # warm: the second of two passes is as fast as a long run's
                    policy.act(images[(r + i) % len(images)], INSTRUCTION)
                idle(gap / 1e3, mode)
                start = time.perf_counter()
                policy.act(images[(r + 2) % len(images)], INSTRUCTION)
                times[(mode, gap)].append((time.perf_counter() - start) * 1e3)
                bar.update()
    return times


def rows(times: dict[tuple[str, float], list[float]]) -> list[dict]:
    out = []
    for (mode, gap), values in times.items():
        base = statistics.median(times[(mode, min(g for m, g in times if m == mode))])
        ordered = sorted(values)
        out.append({"idle": mode, "gap_ms": gap, "median_ms": statistics.median(values),
                    "p10_ms": ordered[len(ordered) // 10], "p90_ms": ordered[(9 * len(ordered)) // 10],
                    "min_ms": ordered[0], "penalty_ms": statistics.median(values) - base})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="", help="a student checkpoint directory (default: the shipped one)")
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
    policy = RoutedPolicy.load(args.checkpoint or None, device=args.device)
    policy.warmup(5)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(224, 224, 3), dtype=np.uint8) for _ in range(4)]
    table = rows(measure(policy, images, sorted(set(args.gaps)), args.idle, args.rounds))
    result = {
        "checkpoint": args.checkpoint or "shipped student",
        "device": str(policy.device),
        "layers_total": policy.layers_total,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "machine": {"cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "rows": table,
    }
    print(f"forward pass after an idle gap ({result['device']}, {result['torch_threads']} thread(s), "
          f"{args.rounds} rounds, {result['checkpoint']})")
    print("| idle | gap ms | median ms | p10 ms | p90 ms | penalty ms |")
    print("|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['idle']} | {r['gap_ms']:g} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | {r['p90_ms']:.2f} | "
              f"{r['penalty_ms']:+.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
