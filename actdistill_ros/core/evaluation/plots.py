"""PNG plots for benchmark and distillation reports (matplotlib, headless Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_keep_ratio_curve(result: dict, path: str | Path, baselines: dict[str, dict] | None = None) -> Path:
    """Paper Figure 3: held-out action error and latency vs compute over run-time layer caps
    (and, when given, the baselines' points: ``{name: {flops_ratio, action_error_ratio, speedup}}``)."""
    curve = result["curve"]
    flops = [row["flops_ratio"] for row in curve]
    fig, (ax_err, ax_speed) = plt.subplots(1, 2, figsize=(10, 4))
    ax_err.plot(flops, [row["action_error_ratio"] for row in curve], "o-", label="student (max_layers cap)")
    ax_err.axhline(1.0, color="grey", ls="--", label="teacher")
    ax_err.scatter([result["flops_ratio"]], [result["action_error_ratio"]], color="red", zorder=3,
                   label="student, no cap")
    ax_err.set_xlabel("FLOPs ratio (student / teacher)")
    ax_err.set_ylabel("held-out action MSE ratio (student / teacher)")
    ax_speed.plot(flops, [row["speedup"] for row in curve], "o-")
    ax_speed.axhline(1.0, color="grey", ls="--")
    ax_speed.set_xlabel("FLOPs ratio (student / teacher)")
    ax_speed.set_ylabel("speed-up (teacher latency / student latency)")
    for ax, row_key in ((ax_err, "action_error_ratio"), (ax_speed, "speedup")):
        for marker, (name, b) in zip("sD^v", (baselines or {}).items(), strict=False):
            ax.scatter([b["flops_ratio"]], [b[row_key]], marker=marker, zorder=3, label=f"baseline: {name}")
        for row in curve:
            ax.annotate(str(row["max_layers"]), (row["flops_ratio"], row[row_key]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax_err.legend(fontsize=7)
    fig.suptitle("Accuracy and latency vs compute (labels: max_layers)")
    fig.tight_layout()
    return _save(fig, path)


def plot_layer_frequency(result: dict, path: str | Path) -> Path:
    """Paper Figure 4: how often each decoder layer is executed on held-out data."""
    freq = result["layer_frequency"]
    fig, ax = plt.subplots(figsize=(max(4, len(freq) * 0.6), 3.5))
    ax.bar(range(len(freq)), freq)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("activation frequency")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(range(len(freq)))
    ax.set_title(f"Per-layer gate activation (mean {sum(freq) / max(len(freq), 1):.2f})")
    fig.tight_layout()
    return _save(fig, path)


def plot_training_curves(metrics: dict[str, Path], path: str | Path) -> Path:
    """One panel per stage, one line per logged loss term (from ``<stage>_metrics.jsonl``)."""
    stages = {name: p for name, p in metrics.items() if Path(p).exists()}
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(5 * max(1, len(stages)), 3.8), squeeze=False)
    for ax, (name, p) in zip(axes[0], stages.items(), strict=False):
        records = [json.loads(line) for line in Path(p).read_text().splitlines() if line.strip()]
        keys = [k for k in (records[0] if records else {}) if k not in {"step", "epoch"}]
        for key in keys:
            ax.plot([r["step"] for r in records], [r.get(key, float("nan")) for r in records], label=key, lw=1)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
