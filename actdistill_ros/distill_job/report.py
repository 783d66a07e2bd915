"""The job report: ``report.json`` (machine-readable), ``report.md`` (for people) and PNG plots.

``report.json`` keys (top level): ``student_checkpoint``, ``teacher_checkpoint``, ``dataset``,
``flops_ratio`` and ``speedup`` (student/teacher FLOPs, teacher/student batch-1 latency),
``executed_layer_fraction``, ``action_error_ratio`` (held-out action MSE student/teacher),
``keep_ratio_target``, ``episodes``, ``steps``, ``skipped_bags`` ([{bag, reason}]), ``teacher`` and
``student`` (flops, latency_ms, action_mse...), ``layer_frequency``, ``curve`` (per run-time layer
cap), ``held_out`` (the pipeline's own evaluation), ``training`` (steps and final loss terms per
stage), ``dataset_summary``, ``plots`` (paths relative to the output dir), ``benchmark_config``,
``config``, ``seconds``, ``created``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from ..core.atomic_files import write_json_atomic
from ..core.evaluation.bench import BenchConfig, benchmark, benchmark_markdown
from ..core.evaluation.plots import plot_keep_ratio_curve, plot_layer_frequency, plot_training_curves
from .config import DistillJobConfig

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
STAGES = ("teacher", "probe", "student")
SUMMARY_KEYS = ("bags_used", "bags_without_episodes", "skipped_bags", "episodes", "steps", "topics",
                "dropped_messages", "out_of_order", "dropped_short_episodes", "episode_details", "stamps", "note")


def plot_dataset_summary(summary: dict[str, Any], path: str | Path) -> Path:
    """Steps per episode (coloured by source bag) and how many bags were used / skipped."""
    from ..core.evaluation import plots  # Agg backend set there

    plt = plots.plt
    details = summary.get("episode_details", [])
    sources = sorted({Path(str(d.get("source", ""))).name for d in details})
    colours = {s: plt.cm.tab20(i % 20) for i, s in enumerate(sources)}
    fig, (ax_ep, ax_bags) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    steps = [d.get("steps", 0) for d in details]
    ax_ep.bar(range(len(steps)), steps, color=[colours[Path(str(d.get("source", ""))).name] for d in details])
    ax_ep.set_xlabel("episode")
    ax_ep.set_ylabel("steps")
    ax_ep.set_title(f"{summary.get('episodes', len(details))} episodes, {summary.get('steps', sum(steps))} steps "
                    f"(colour: source bag)")
    counts = {
        "used": len(summary.get("bags_used", [])),
        "no episode": len(summary.get("bags_without_episodes", [])),
        "skipped": len(summary.get("skipped_bags", [])),
    }
    ax_bags.bar(list(counts), list(counts.values()), color=["tab:green", "tab:orange", "tab:red"])
    ax_bags.set_title("bags")
    ax_bags.set_ylabel("count")
    fig.tight_layout()
    return plots._save(fig, path)


def _training(runs: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stage in STAGES:
        done = runs / f"{stage}_done.json"
        if done.is_file():
            info = json.loads(done.read_text())
            out[stage] = {"steps": info.get("steps"), "final": info.get("final", {}),
                          **({"held_out": info["held_out"]} if "held_out" in info else {})}
    return out


def _dataset_summary(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in SUMMARY_KEYS if k in summary}


def write_report(cfg: DistillJobConfig, out_dir: Path, *, dataset_dir: Path, teacher_dir: Path, student_dir: Path,
                 distill_metrics: dict[str, Any], dataset_summary: dict[str, Any],
                 seconds: dict[str, float] | None = None, baselines: dict[str, Path] | None = None,
                 warnings: list[str] | None = None) -> tuple[dict[str, Any], Path, Path]:
    """Benchmark teacher vs student (and the baselines) on held-out data, draw the plots, write
    report.json/.md."""
    out_dir = Path(out_dir)
    plots_dir = out_dir / PLOTS_DIR
    dcfg = cfg.distill_config()
    bench_cfg = BenchConfig(device=cfg.device, warmup=3, latency_iters=cfg.report_latency_iters,
                            curve_latency_iters=cfg.report_latency_iters, eval_samples=cfg.report_eval_samples,
                            held_out_fraction=dcfg.held_out_fraction)
    bench = benchmark(teacher_dir, student_dir, dataset_dir, bench_cfg)
    baseline_results = {name: _baseline_numbers(benchmark(teacher_dir, path, dataset_dir,
                                                          dataclasses.replace(bench_cfg, curve=False)), path)
                        for name, path in (baselines or {}).items()}

    runs = out_dir / "runs"
    metrics = {stage: runs / f"{stage}_metrics.jsonl" for stage in STAGES if (runs / f"{stage}_metrics.jsonl").exists()}
    plots = {
        "training_curves": plot_training_curves(metrics, plots_dir / "training_curves.png"),
        "layer_frequency": plot_layer_frequency(bench, plots_dir / "layer_frequency.png"),
        "keep_ratio_curve": plot_keep_ratio_curve(bench, plots_dir / "keep_ratio_curve.png", baseline_results),
        "dataset_summary": plot_dataset_summary(dataset_summary, plots_dir / "dataset_summary.png"),
    }
    report: dict[str, Any] = {
        "student_checkpoint": str(student_dir),
        "teacher_checkpoint": str(teacher_dir),
        "dataset": str(dataset_dir),
        "flops_ratio": bench["flops_ratio"],
        "speedup": bench["speedup"],
        "executed_layer_fraction": bench["executed_layer_fraction"],
        "action_error_ratio": bench["action_error_ratio"],
        "keep_ratio_target": cfg.keep_ratio,
        "distinct_routes": bench["distinct_routes"],
        "top_routes": bench["top_routes"],
        "warnings": list(warnings or []),
        "baselines": baseline_results,
        "baseline_verdict": None,
        "episodes": int(dataset_summary.get("episodes", 0)),
        "steps": int(dataset_summary.get("steps", 0)),
        "skipped_bags": list(dataset_summary.get("skipped_bags", [])),
        "teacher": bench["teacher"],
        "student": bench["student"],
        "layer_frequency": bench["layer_frequency"],
        "curve": bench["curve"],
        "held_out": distill_metrics,
        "training": _training(runs),
        "dataset_summary": _dataset_summary(dataset_summary),
        "plots": {k: str(p.relative_to(out_dir)) for k, p in plots.items()},
        "benchmark_config": bench["config"],
        "config": cfg.to_dict(),
        "seconds": dict(seconds or {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    report["baseline_verdict"] = baseline_verdict(report)
    json_path = out_dir / REPORT_JSON
    write_json_atomic(json_path, report, default=str)
    md_path = out_dir / REPORT_MD
    md_path.write_text(report_markdown(report, benchmark_markdown(bench)))
    return report, json_path, md_path


def _baseline_numbers(bench: dict[str, Any], path: Path) -> dict[str, Any]:
    return {"checkpoint": str(path), "router": bench["router"], "flops_ratio": bench["flops_ratio"],
            "speedup": bench["speedup"], "action_error_ratio": bench["action_error_ratio"],
            "executed_layer_fraction": bench["executed_layer_fraction"], "distinct_routes": bench["distinct_routes"],
            "layer_frequency": bench["layer_frequency"]}


# a baseline "wins" when its held-out action error is lower than the student's by more than this
# share (one run's noise between equal models is a few percent) at no more FLOPs (within 0.01)
VERDICT_MARGIN = 0.05


def baseline_verdict(report: dict[str, Any]) -> str | None:
    """Does the learned router earn its keep against the baselines of the same run? One sentence
    for the console and the report (None without baselines). Offline numbers only: the closed
    loop may not separate them (see docs/results/README.md)."""
    rivals = {name: r for name, r in (report.get("baselines") or {}).items()
              if r["flops_ratio"] <= report["flops_ratio"] + 0.01}
    if not rivals:
        return None
    student = report["action_error_ratio"]
    name, best = min(rivals.items(), key=lambda item: item[1]["action_error_ratio"])
    if best["action_error_ratio"] < student * (1.0 - VERDICT_MARGIN):
        return (f"baseline '{name}' beats the routed student at the same compute (held-out action error "
                f"{best['action_error_ratio']:.3f} vs {student:.3f} of the teacher's, FLOPs {best['flops_ratio']:.3f} "
                f"vs {report['flops_ratio']:.3f}): the router does not earn its keep on this data; "
                f"{best['checkpoint']} is a student checkpoint like any other and can be deployed instead")
    if student < best["action_error_ratio"] * (1.0 - VERDICT_MARGIN):
        return (f"the routed student beats every baseline at the same compute (held-out action error {student:.3f} "
                f"vs {best['action_error_ratio']:.3f} for '{name}', the best of them)")
    return (f"the routed student and the best baseline ('{name}') are within {VERDICT_MARGIN:.0%} of each other "
            f"(held-out action error {student:.3f} vs {best['action_error_ratio']:.3f}): no evidence that the "
            f"router earns its keep on this data")


def baselines_markdown(report: dict[str, Any]) -> list[str]:
    """The student beside its baselines (same layer count, same training budget)."""
    rows = [("student (learned router)", report)] + list(report.get("baselines", {}).items())
    lines = ["| model | layers run | FLOPs ratio | speed-up | held-out action error ratio | distinct routes |",
             "|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['executed_layer_fraction']:.3f} | {r['flops_ratio']:.3f} | {r['speedup']:.2f}x | "
                     f"{r['action_error_ratio']:.3f} | {r.get('distinct_routes', '')} |")
    return lines


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def report_markdown(report: dict[str, Any], bench_md: str) -> str:
    ds = report["dataset_summary"]
    lines = [
        "# ActDistill distillation report",
        "",
        f"Created {report['created']}. Student checkpoint: `{report['student_checkpoint']}` "
        f"(teacher `{report['teacher_checkpoint']}`, dataset `{report['dataset']}`).",
        "",
        "## Headline",
        "",
        "| metric | value |",
        "|---|---|",
        f"| FLOPs ratio (student / teacher) | {report['flops_ratio']:.3f} |",
        f"| speed-up (teacher / student latency, batch 1) | {report['speedup']:.2f}x |",
        f"| executed layer fraction (target keep_ratio {report['keep_ratio_target']}) | "
        f"{report['executed_layer_fraction']:.3f} |",
        f"| held-out action error ratio (student / teacher MSE) | {report['action_error_ratio']:.3f} |",
        f"| dataset | {report['episodes']} episodes, {report['steps']} steps, "
        f"{len(report['skipped_bags'])} skipped bag(s) |",
        "",
    ]
    if report.get("warnings"):
        lines += ["## Warnings", ""] + [f"- **{w}**" for w in report["warnings"]] + [""]
    lines += [
        "## Student vs teacher",
        "",
        bench_md,
        f"![accuracy and latency vs compute]({report['plots']['keep_ratio_curve']})",
        "",
        f"![per-layer gate activation frequency]({report['plots']['layer_frequency']})",
        "",
        "Most common routes on held-out samples: " + "; ".join(
            f"layers {r['layers']} ({r['share']:.0%})" for r in report.get("top_routes", [])) + ".",
        "",
    ]
    if report.get("baselines"):
        lines += ["## Baselines (same layers per pass, same training budget)", ""] + baselines_markdown(report) + [""]
        if report.get("baseline_verdict"):
            lines += [f"**Verdict:** {report['baseline_verdict']}.", ""]
    lines += [
        "## Training",
        "",
        "| stage | steps | final loss terms |",
        "|---|---|---|",
    ]
    for stage, info in report["training"].items():
        final = ", ".join(f"{k} {_fmt(v)}" for k, v in info.get("final", {}).items() if k not in ("step", "epoch"))
        lines.append(f"| {stage} | {info.get('steps')} | {final} |")
    lines += ["", f"![training curves]({report['plots']['training_curves']})", "", "## Dataset", ""]
    lines.append(f"{ds.get('episodes')} episodes, {ds.get('steps')} steps from {len(ds.get('bags_used', []))} bag(s).")
    if ds.get("note"):
        lines.append(f"Note: {ds['note']}.")
    if ds.get("topics"):
        lines += ["", "| topic | messages | kept | mean rate (Hz) |", "|---|---|---|---|"]
        for topic, st in ds["topics"].items():
            lines.append(f"| `{topic}` | {st.get('count')} | {st.get('kept')} | {st.get('rate_hz')} |")
    if report["skipped_bags"]:
        lines += ["", "Skipped bags (not used at all):", ""]
        lines += [f"- `{s.get('bag')}`: {s.get('reason')}" for s in report["skipped_bags"]]
    if ds.get("bags_without_episodes"):
        names = ", ".join(f"`{b}`" for b in ds["bags_without_episodes"])
        lines += ["", f"Bags without an episode long enough: {names}"]
    if ds.get("dropped_messages"):
        lines += ["", "Dropped messages: " + json.dumps(ds["dropped_messages"])]
    if ds.get("dropped_short_episodes"):
        lines += ["", f"Episodes dropped as too short: {len(ds['dropped_short_episodes'])}"]
    lines += ["", f"![dataset summary]({report['plots']['dataset_summary']})", ""]
    if report.get("seconds"):
        lines += ["## Time (this run)", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in report["seconds"].items()]
        lines.append("")
    lines += ["## Configuration", "", "```json", json.dumps(report["config"], indent=2), "```", ""]
    return "\n".join(lines)
