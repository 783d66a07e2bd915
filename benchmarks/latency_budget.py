"""Does the policy node keep its latency budget when the machine gets busy? (issue 13, item 5)

    python benchmarks/latency_budget.py [--episodes 20] [--budget-ms B | --budget-factor 1.3]
        [--hog-procs N] [--student DIR] [--teacher DIR | --no-teacher] [--tasks all]
        [--real-time-factor 2] [--threads 0] [--device cpu] [--inference-priority 0]
        [--out runs/latency_budget] [--json F]

Each condition is one closed-loop run on the simulated arm, by the ``actdistill eval`` machinery
(sim and policy node each in its own process, over DDS, seeded episodes): first the *quiet*
phase, episodes 0..N-1 of every task; then ``--hog-procs`` CPU-burning processes start (default:
one per core) and the *loaded* phase runs the same episodes again while the node stays up, as
when another job lands on the robot's computer halfway through a task. The hogs are killed
before the next condition (and end by themselves if this process dies).

Conditions, in this order, on the same episodes:

1. ``student, budget off``: what happens without the deadline;
2. ``student, budget on``: ``latency_budget_ms`` = ``--budget-ms``, or by default
   ``--budget-factor`` x the p95 forward latency of condition 1's quiet phase (a deadline the quiet
   node keeps with some room, measured on this machine in this run, so no number is carried over
   from another machine);
3. with ``--inference-priority N``, conditions 1 and 2 again with the node's inference thread under
   ``SCHED_FIFO`` at N (``inference_priority``) and the same budget: the hogs then wait for the
   node, not the node for the hogs, and what is left of the slowdown is what they take from the
   caches and the memory bandwidth;
4. ``teacher`` (reference: no layers to skip, so no budget; ``--no-teacher`` skips it).

Per condition x phase: success rate, the forward latency in the node (each pass once, from the
status topic) p50/p95, passes over the budget (the same budget for every condition, so the
budget-off rows show how often that deadline would have been missed), the layer cap (mean over
passes; no cap counts as all layers), layers executed and, with the budget on, the node's own
miss count and at which loaded pass it made its first cut below the cap the quiet phase ended
with (its window may still hold quiet passes then; None: no cut). Ratios from the same run:
loaded/quiet p95 per condition, loaded p95 with the budget on/off, p95/budget.

Latency is only part of the story in the closed loop: the sim steps every 100 ms of simulated
time, ``--real-time-factor`` times faster than real time (default 2, as ``actdistill eval``: a
50 ms wall step), so a pass that ends before the next step is not late for the arm; a higher
factor tightens the world's own deadline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from actdistill_ros.core.model.checkpoint import default_student_path, default_teacher_path
from actdistill_ros.core.progress import progress_bar
from actdistill_ros.sim.tasks import task_names
from actdistill_ros.sim_ros.closed_loop import EvalConfig, closed_loop_session, forward_passes, run_episode

# Pure Python arithmetic keeps one core busy; the parent check ends a hog whose benchmark died
# (killed with SIGKILL, no finally) within a fraction of a second. The parent's pid comes as an
# argument: a parent that dies while the hog starts up must not become the hog's idea of its parent.
HOG_CODE = """import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    x = 0
    for i in range(200_000):
        x += i * i
"""
PHASES = ("quiet", "loaded")


class CpuHog:
    """``procs`` processes spinning on the CPU while the ``with`` block runs; always killed."""

    def __init__(self, procs: int) -> None:
        self.procs = procs
        self.popens: list[subprocess.Popen] = []

    def start(self) -> CpuHog:
        try:
            for _ in range(self.procs):
                argv = [sys.executable, "-c", HOG_CODE, str(os.getpid())]
                self.popens.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True))
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> CpuHog:
        return self.start()

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.popens)

    def stop(self) -> None:
        for p in self.popens:
            if p.poll() is None:
                p.kill()
        for p in self.popens:
            p.wait()

    def __exit__(self, *exc) -> None:
        self.stop()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else math.nan


def run_condition(name: str, checkpoint: Path, cfg: EvalConfig, args, log_dir: Path) -> dict:
    """One node session: the quiet phase, then the hog and the loaded phase on the same episodes."""
    tasks = task_names(cfg.tasks)
    episodes: list[dict] = []
    phase_passes: dict[str, list] = {}
    phase_statuses: dict[str, list] = {}
    phase_info: dict[str, dict] = {}
    hog = CpuHog(args.hog_procs)
    try:
        with closed_loop_session(checkpoint, cfg, log_dir) as driver:
            for phase in PHASES:
                if phase == "loaded":
                    hog.start()
                load_start, t0 = os.getloadavg()[0], time.monotonic()
                passes, statuses = [], []
                bar = progress_bar(len(tasks) * cfg.episodes, f"{name}, {phase}", unit="episode")
                for task in tasks:
                    for index in range(cfg.episodes):
                        ep = run_episode(driver, cfg, task, index)
                        ep_passes = forward_passes(ep.statuses)
                        passes += ep_passes
                        statuses += ep.statuses
                        lat = [p.latency_ms for p in ep_passes]
                        episodes.append({"phase": phase, "task": task, "index": index, "success": ep.success,
                                         "steps": ep.steps, "passes": len(ep_passes), "p95_ms": pct(lat, 95),
                                         "mean_layer_cap": _mean_cap(ep_passes, ep.statuses)})
                        bar.update(1)
                bar.close()
                phase_passes[phase], phase_statuses[phase] = passes, statuses
                phase_info[phase] = {"wall_s": time.monotonic() - t0, "load_1m_start": load_start,
                                     "load_1m_end": os.getloadavg()[0],
                                     **({"hog_procs_alive_at_end": hog.alive()} if phase == "loaded" else {})}
    finally:
        hog.stop()
    return {"checkpoint": str(checkpoint), "latency_budget_ms": cfg.latency_budget_ms, "episodes": episodes,
            "passes": phase_passes, "statuses": phase_statuses, "phase_info": phase_info}


def _layers_total(statuses: list) -> int:
    return max((int(s.layers_total) for s in statuses), default=0)


def _mean_cap(passes: list, statuses: list) -> float:
    total = _layers_total(statuses)
    return float(np.mean([p.layer_cap or total for p in passes])) if passes else math.nan


def phase_rows(name: str, run: dict, budget_ms: float) -> list[dict]:
    rows, misses_before = [], 0
    for phase in PHASES:
        passes, statuses = run["passes"][phase], run["statuses"][phase]
        lat = [p.latency_ms for p in passes]
        eps = [e for e in run["episodes"] if e["phase"] == phase]
        over = sum(v > budget_ms for v in lat)
        row = {"condition": name, "phase": phase, "episodes": len(eps),
               "success_rate": float(np.mean([e["success"] for e in eps])) if eps else math.nan,
               "mean_steps": float(np.mean([e["steps"] for e in eps])) if eps else math.nan,
               "passes": len(passes), "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
               "max_ms": max(lat, default=math.nan),
               "p95_over_budget": pct(lat, 95) / budget_ms, "over_budget": int(over),
               "over_budget_fraction": over / len(lat) if lat else math.nan,
               "mean_layer_cap": _mean_cap(passes, statuses),
               "min_layer_cap": min((p.layer_cap or _layers_total(statuses) for p in passes), default=0),
               "mean_layers_executed": float(np.mean([p.layers_executed for p in passes])) if passes else math.nan,
               **run["phase_info"][phase]}
        if run["latency_budget_ms"] > 0:
            # the node counts every pass since configure (also between episodes, outside these lists)
            misses = max((int(s.latency_budget_misses) for s in statuses), default=misses_before)
            row["node_misses"], misses_before = misses - misses_before, misses
            if phase == "loaded" and passes:  # the cap the quiet phase ended with, then the first cut below it
                total = _layers_total(statuses)
                quiet = run["passes"]["quiet"]
                start_cap = (quiet[-1].layer_cap or total) if quiet else total
                row["passes_to_first_cut"] = next(
                    (i + 1 for i, x in enumerate(passes) if (x.layer_cap or total) < start_cap), None)
        rows.append(row)
    return rows


def ratios(rows: list[dict]) -> dict:
    by = {(r["condition"], r["phase"]): r for r in rows}
    out = {}
    for name in dict.fromkeys(r["condition"] for r in rows):
        quiet, loaded = by[(name, "quiet")], by[(name, "loaded")]
        out[name] = {"p95_loaded_over_quiet": loaded["p95_ms"] / quiet["p95_ms"],
                     "success_loaded_minus_quiet": loaded["success_rate"] - quiet["success_rate"]}
    off, on = by.get(("student, budget off", "loaded")), by.get(("student, budget on", "loaded"))
    if off and on:
        out["loaded: budget on vs off"] = {"p95_on_over_off": on["p95_ms"] / off["p95_ms"],
                                           "success_on_minus_off": on["success_rate"] - off["success_rate"],
                                           "over_budget_on": on["over_budget_fraction"],
                                           "over_budget_off": off["over_budget_fraction"]}
    return out


def table(rows: list[dict], budget_ms: float) -> str:
    lines = [f"budget {budget_ms:.2f} ms",
             "| condition | phase | success | p50 ms | p95 ms | p95/budget | over budget | mean cap | layers run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['condition']} | {r['phase']} | {r['success_rate']:.0%} | {r['p50_ms']:.2f} | "
                     f"{r['p95_ms']:.2f} | {r['p95_over_budget']:.2f} | {r['over_budget']}/{r['passes']} "
                     f"({r['over_budget_fraction']:.0%}) | {r['mean_layer_cap']:.2f} | "
                     f"{r['mean_layers_executed']:.2f} |")
    for r in rows:
        if "node_misses" in r:
            cut = r.get("passes_to_first_cut", "-")
            lines.append(f"{r['condition']}, {r['phase']}: node misses {r['node_misses']}"
                         + (f"; first cut at loaded pass {cut}" if r["phase"] == "loaded" else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=20, help="seeded episodes per task and phase")
    p.add_argument("--budget-ms", type=float, help="latency_budget_ms of the budget-on condition "
                   "(default: --budget-factor x the quiet p95 of the budget-off condition)")
    p.add_argument("--budget-factor", type=float, default=1.3)
    p.add_argument("--hog-procs", type=int, default=os.cpu_count() or 1,
                   help="CPU-burning processes started halfway (default: one per core)")
    p.add_argument("--student", type=Path, default=None, help="student checkpoint (default: the shipped one)")
    p.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint (default: the shipped one)")
    p.add_argument("--no-teacher", action="store_true", help="skip the teacher reference condition")
    p.add_argument("--tasks", default="reach", help="a suite (reach, between), all, or task names")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real-time-factor", type=float, default=2.0, help="simulated seconds per wall second")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the policy node (0: torch default)")
    p.add_argument("--device", default="cpu", help="policy node device (the hog loads the CPU)")
    p.add_argument("--inference-priority", type=int, default=0,
                   help="> 0: also both student conditions with the node's inference_priority at this "
                        "(SCHED_FIFO 1-99)")
    p.add_argument("--out", type=Path, default=Path("runs/latency_budget"), help="node logs (and the JSON)")
    p.add_argument("--json", type=Path, help="result JSON (default OUT/latency_budget.json)")
    args = p.parse_args(argv)
    if args.episodes < 1 or args.hog_procs < 0 or (args.budget_ms is not None and args.budget_ms <= 0):
        p.error("--episodes must be >= 1, --hog-procs >= 0 and --budget-ms > 0")
    student = args.student or default_student_path()
    teacher = args.teacher or default_teacher_path()
    json_path = args.json or args.out / "latency_budget.json"
    base = dict(episodes=args.episodes, seed=args.seed, tasks=args.tasks, real_time_factor=args.real_time_factor,
                device=args.device, node_threads=args.threads)

    # (name, checkpoint, budget: None = calibrated from the first condition, inference_priority)
    conditions = [("student, budget off", student, 0.0, 0), ("student, budget on", student, args.budget_ms, 0)]
    if args.inference_priority:
        fifo = f"SCHED_FIFO {args.inference_priority}"
        conditions += [(f"student, budget off, {fifo}", student, 0.0, args.inference_priority),
                       (f"student, budget on, {fifo}", student, args.budget_ms, args.inference_priority)]
    if not args.no_teacher:
        conditions.append(("teacher", teacher, 0.0, 0))
    result = {"config": {**vars(args), "student": str(student), "teacher": str(teacher)},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
              "budget_ms": args.budget_ms, "budget_source": "--budget-ms" if args.budget_ms else None,
              "rows": [], "ratios": {}, "episodes": {}}
    runs: dict[str, dict] = {}
    for name, checkpoint, budget, priority in conditions:
        if budget is None and result["budget_ms"] is not None:
            budget = result["budget_ms"]
        if budget is None:
            quiet = [x.latency_ms for x in runs["student, budget off"]["passes"]["quiet"]]
            if not quiet:
                raise SystemExit("no forward pass in the budget-off quiet phase: cannot calibrate the budget")
            budget = args.budget_factor * pct(quiet, 95)
            result["budget_ms"] = budget
            result["budget_source"] = (f"{args.budget_factor:g} x the quiet p95 of 'student, budget off' "
                                       f"({pct(quiet, 95):.2f} ms)")
            print(f"budget: {result['budget_source']} = {budget:.2f} ms", flush=True)
        print(f"{name}: {args.episodes} episodes per task quiet, then {args.hog_procs} CPU hogs and the same "
              f"episodes again", flush=True)
        cfg = EvalConfig(**base, latency_budget_ms=budget, inference_priority=priority)
        log_dir = args.out / "logs" / name.replace(", ", "_").replace(" ", "_")
        runs[name] = run_condition(name, Path(checkpoint), cfg, args, log_dir)
        result["episodes"][name] = runs[name]["episodes"]
        if result["budget_ms"] is not None:
            result["rows"] = [row for n, r in runs.items() for row in phase_rows(n, r, result["budget_ms"])]
            result["ratios"] = ratios(result["rows"])
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")  # after every condition
    print(table(result["rows"], result["budget_ms"]))
    print(json.dumps(result["ratios"], indent=2))
    print(f"JSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
