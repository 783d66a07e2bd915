"""Markdown for closed-loop results (docs/results/README.md tables, eval.md)."""

from __future__ import annotations

import math


def _pct(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def _num(value: float, fmt: str = ".1f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def eval_markdown(result: dict) -> str:
    teacher, student = result["teacher"], result["student"]
    cfg = result.get("config", {})
    lines = [
        f"Closed loop over DDS: {cfg.get('episodes', '?')} seeded episodes per task (seed {cfg.get('seed', '?')}), "
        f"sim at {cfg.get('real_time_factor', '?')}x real time.",
        "",
        "| policy | success | mean steps | latency (ms) | p95 latency (ms) | control rate (Hz) | layers run "
        "| FLOPs ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {0: "TELEOP", 1: "SHADOW", 2: "AUTONOMY"}
    rows = [("teacher", teacher), ("student", student)]
    rows += [(f"baseline: {name}", r) for name, r in result.get("baselines", {}).items()]
    for label, r in rows:
        lines.append(
            f"| {label} | {_pct(r['success_rate'])} | {_num(r['mean_steps'])} | {_num(r['latency_ms'], '.2f')} | "
            f"{_num(r['latency_p95_ms'], '.2f')} | {_num(r['control_hz'])} | "
            f"{_pct(r['executed_layer_fraction'])} | {_num(r['flops_ratio'], '.2f')} |")
    speedup = teacher["latency_ms"] / student["latency_ms"] if student["latency_ms"] else float("nan")
    lines += ["", f"Student speed-up (teacher latency / student latency, same node, same run): **{speedup:.2f}x**.",
              ""]
    tasks = result.get("tasks", {})
    columns = list(next(iter(tasks.values()), {}))  # teacher, student, baseline <name>...
    lines += ["| task | " + " | ".join(f"{c} success" for c in columns) + " | "
              + " | ".join(f"{c} steps" for c in columns) + " |", "|---" * (1 + 2 * len(columns)) + "|"]
    for task, per_policy in tasks.items():
        lines.append(f"| {task} | " + " | ".join(_pct(per_policy[c]['success_rate']) for c in columns) + " | "
                     + " | ".join(_num(per_policy[c]['mean_steps']) for c in columns) + " |")
    handoff = result.get("handoff")
    if handoff:
        reasons = "; ".join(f"{names.get(t['from'], t['from'])} -> {names.get(t['to'], t['to'])} ({t['reason']})"
                            for t in handoff["transitions"])
        lines += ["", f"Handoff scenario (student): transitions {reasons}. "
                  f"{handoff['policy_commands']} policy commands, first human command "
                  f"{handoff['ticks_from_override_to_human_command']} tick(s) after the override; "
                  f"episode {'succeeded' if handoff['episode_success'] else 'failed'} "
                  f"in {handoff['episode_steps']} steps."]
    job = result.get("main_job")
    if job:
        secs = job["seconds"]
        lines += ["", f"Main job (preset {job['preset']}, seed {job['seed']}): {job['demonstrations']} demonstrations "
                  f"(expert success {_pct(job['expert_success_rate'])}); record {secs['record_s']:.0f} s, "
                  f"distill {secs['distill_s']:.0f} s, evaluate {secs['eval_s']:.0f} s."]
    return "\n".join(lines) + "\n"
