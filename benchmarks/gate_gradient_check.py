"""Does a straight-through gate's gradient say what removing a layer costs?

A learned router is trained through straight-through gates: layer i's gate g_i scales its
residual (``h <- h + g_i (f_i(h) - h)``, ``RoutedStudent.forward_train``) and the router follows
dL/dg_i. With every gate at 1 (where stage 2's budget warm-up starts) ``-dL/dg_i`` is the
first-order estimate of what removing layer i alone adds to the loss. This measures, for each layer
of a network, that estimate against the loss change of actually removing the layer (every other
layer kept), on training samples of a finished job, and the layers each would keep.

    python benchmarks/gate_gradient_check.py --run runs/default_baselines --teacher runs/default/teacher \\
        --dataset runs/default/data --keep 3 [--samples 1024] [--json F]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from finished_job_args import add_finished_job_arguments, read_job, write_json  # benchmarks/ is the script's directory
from tqdm import tqdm

from actdistill_ros.core.training.stages import TensorData


def gated_task_loss(model, data: TensorData, gates: torch.Tensor, batch_size: int, backward: bool) -> float:
    """The action head's task loss over ``data`` with every layer's residual scaled by its gate
    (``forward_train``'s mixing); ``backward``: also accumulate d loss / d gates in ``gates.grad``."""
    total = 0.0
    for start in range(0, len(data), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(data)))
        inputs, target = data.rows(rows, gates.device)
        with torch.set_grad_enabled(backward):
            batch = model.embed(inputs)
            hidden = batch.hidden
            for index in range(model.num_layers):
                hidden = hidden + gates[index] * (model.call_layer(index, hidden, batch) - hidden)
            loss = model.head_loss(hidden, batch, model.normalizer.normalize(target)) * (len(rows) / len(data))
            if backward:
                loss.backward()
        total += float(loss.detach())
    return total


def spearman(a: list[float], b: list[float]) -> float:
    rank = lambda v: torch.tensor(v).argsort().argsort().float()  # noqa: E731
    ra, rb = rank(a), rank(b)
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_finished_job_arguments(parser, "a finished distillation job (its training split)")
    parser.add_argument("--keep", type=int, default=3, help="layers each ranking keeps")
    parser.add_argument("--samples", type=int, default=1024, help="training samples, spread over the episodes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    job = read_job(args)
    model = job.teacher.eval()  # (dropout off: the same function every pass)
    data = job.train.spread(args.samples)
    layers = model.num_layers
    gates = torch.ones(layers, requires_grad=True)
    base = gated_task_loss(model, data, gates, args.batch_size, backward=True)
    predicted = [-float(g) for g in gates.grad]
    measured = []
    for index in tqdm(range(layers), desc="removing layers", unit="layer"):
        removed = torch.ones(layers)
        removed[index] = 0.0
        measured.append(gated_task_loss(model, data, removed, args.batch_size, backward=False) - base)

    def keep(costs: list[float]) -> list[int]:
        return sorted(sorted(range(layers), key=lambda i: -costs[i])[:args.keep])

    rows = [{"layer": i, "predicted_increase": predicted[i], "measured_increase": measured[i]} for i in range(layers)]
    result = {"run": str(args.run), "samples": len(data), "base_task_loss": base, "layers": rows,
              "spearman": spearman(predicted, measured), "keep": args.keep,
              "kept_by_gradient": keep(predicted), "kept_by_removal": keep(measured)}
    print(f"task loss with every layer: {base:.4f} ({len(data)} training samples)")
    print("| layer | -dL/dg (first-order increase) | measured increase when removed |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['layer']} | {row['predicted_increase']:+.4f} | {row['measured_increase']:+.4f} |")
    print(f"rank correlation {result['spearman']:+.2f}; the {args.keep} layers the gradient keeps "
          f"{result['kept_by_gradient']}, removal one at a time keeps {result['kept_by_removal']}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
