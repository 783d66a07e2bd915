"""Speed-up vs executed fraction of the layers, measured against the ideal, from the JSON of
benchmarks/routing_overhead.py (one or more runs, one line each):

    python benchmarks/plot_routing.py run1.json [run2.json ...] --out docs/results/routing/speedup.png

The ideal of a run (dashed) is teacher / ideal time: the skipped layers' share of the teacher's
time gone, the fixed parts (embedding, head) paid once; a dotted line is 1 / fraction (no fixed
parts at all). A measured point on its dashed line means routing costs nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="medians, or each series' fastest pass (on a shared machine: the cost without the others)")
    args = parser.parse_args(argv)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs_all = []
    for path in args.runs:
        run = json.loads(path.read_text())
        rows = sorted(run["rows"], key=lambda r: r["layers_executed"])
        rows = [r["min"] if args.stat == "min" else r for r in rows]
        executed = sorted(r["layers_executed"] for r in run["rows"])
        x = [e / run["layers_total"] for e in executed]
        xs_all += x
        label = f"{run['shape']} {run['layers_total']}x{run['hidden_size']}, {run['execution']}, {run['device']}"
        line = ax.plot(x, [r["speedup"] for r in rows], "o-", label=f"{label}: measured")[0]
        ax.plot(x, [r["ideal_speedup"] for r in rows], "--", color=line.get_color(), label=f"{label}: ideal")
    grid = sorted(set(xs_all))
    ax.plot(grid, [1 / g for g in grid], ":", color="grey", label="1 / fraction (no fixed cost)")
    ax.set_xlabel("fraction of decoder layers executed")
    ax.set_ylabel(f"speed-up over the teacher ({'fastest passes' if args.stat == 'min' else 'medians'}, same run)")
    ax.set_title("Routed student: measured vs ideal speed-up")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
