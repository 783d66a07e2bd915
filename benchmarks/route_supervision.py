"""Can a router learn which route serves each input? Route supervision on a frozen student.

`router_diagnostic.py` found that a distilled top-k student's own routes are no better than a
fixed route, while picking each input's best route *after the fact* would be much better: the
routes differ per input, the stage-2 router does not know how. This asks whether that choice is
learnable from the input at all. With the backbone frozen, every set of ``k`` layers (``k`` = the
student's depth) is run on every training sample; the router is then trained to pick each
sample's best set: the score of a set is the sum of its layers' router logits (so the set the
router ranks first is exactly what top-k inference runs), and the loss is the cross-entropy
against the sets' soft ranking (``softmax(-error / temperature)``). Held-out inputs then run the
route the new router picks, against the same weights' own routes, the best fixed set picked on
the training samples, and the oracle (each held-out input its best set). The exported student
(``OUT/student``, top ``k`` per input) runs in the closed loop like any other:
``actdistill eval --student OUT/student``.

``--probe``: also fit a far larger predictor than the router on the same targets, an MLP on the
frozen student's *unpooled* embeddings (every vision token, the text averaged), to ask whether
the best route is predictable from the input at all, or only not from what the router sees. It is
a learnability probe, not a deployable router (nothing exported).

    python benchmarks/route_supervision.py --student runs/top2/student --teacher runs/shipped/distill/teacher \
        --dataset runs/shipped/distill/dataset --out runs/route_supervision --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch
from router_diagnostic import run_routes  # benchmarks/ is the script's directory
from tqdm import tqdm

from actdistill_ros.core.model.checkpoint import load_student, load_teacher, save_student
from actdistill_ros.core.training.route_stats import route_statistics
from actdistill_ros.core.training.runs import split_dataset
from actdistill_ros.core.training.stages import evaluate, predict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, required=True)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.1,
                        help="of the soft target softmax(-error / T), errors in units of the teacher's mean error")
    parser.add_argument("--probe", action="store_true",
                        help="also fit an MLP on the unpooled embeddings to the same targets (see module)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    job = json.loads((args.student / "config.json").read_text())["distillation"]["config"]
    teacher = load_teacher(args.teacher)
    train, held_out = split_dataset(args.dataset, job["held_out_fraction"], teacher, job.get("max_train_episodes", 0))
    teacher_mse = evaluate(teacher.to(args.device), held_out, routed=False)["action_mse"]
    student = load_student(args.student).to(args.device)
    _, own = predict(student, held_out, routed=True)
    stats = route_statistics(own)
    depth = int(round(stats["layers_per_sample"]["mean"]))
    sets = list(itertools.combinations(range(student.num_layers), depth))
    members = torch.zeros(len(sets), student.num_layers)
    for i, chosen in enumerate(sets):
        members[i, list(chosen)] = 1.0

    started = time.monotonic()
    train_errors = torch.stack([run_routes(student, train, _keep(members[i], len(train)), args.device)
                                for i in tqdm(range(len(sets)), desc="route errors (train)", unit="set")], 1)
    held_errors = torch.stack([run_routes(student, held_out, _keep(members[i], len(held_out)), args.device)
                               for i in tqdm(range(len(sets)), desc="route errors (held-out)", unit="set")], 1)
    before = run_routes(student, held_out, own.bool(), args.device).mean().item()
    best_on_train = int(train_errors.mean(0).argmin())

    probe = None
    if args.probe:  # before the router changes nothing it reads (the embedding is frozen either way)
        probe_pick = fit_probe(student, train, held_out, train_errors / teacher_mse, args)
        probe = {"held_out_action_error_ratio": held_errors[torch.arange(len(held_out)), probe_pick].mean().item()
                 / teacher_mse, "held_out_choice_accuracy": (probe_pick == held_errors.argmin(1)).float().mean().item(),
                 "routes": route_statistics(members[probe_pick].bool())["top_routes"]}
    history = train_router(student, train, train_errors / teacher_mse, members, args)
    chosen = choose(student, held_out, members, args.device, args.batch_size)
    after = held_errors[torch.arange(len(held_out)), chosen].mean().item()
    keep = members[chosen].bool()
    seconds = time.monotonic() - started

    student.min_layers = student.max_layers = depth  # exactly the k layers the router ranks first
    student.router.cfg.min_layers = depth
    save_student(student.cpu(), args.out / "student", extra={"route_supervision": {"depth": depth}})
    ratio = lambda mse: mse / teacher_mse  # noqa: E731
    rows = [
        {"routes": "own routes (stage 2)", "action_error_ratio": ratio(before)},
        {"routes": f"best fixed set {list(sets[best_on_train])} (picked on training samples)",
         "action_error_ratio": ratio(held_errors[:, best_on_train].mean().item())},
        {"routes": "route-supervised router (this script)", "action_error_ratio": ratio(after)},
        {"routes": "oracle: each held-out input its best set", "action_error_ratio":
            ratio(held_errors.min(1).values.mean().item())},
    ]
    report = {
        "depth": depth, "sets": [list(s) for s in sets], "teacher_action_mse": teacher_mse,
        "train_samples": len(train), "held_out_samples": len(held_out), "rows": rows,
        "held_out_choice_accuracy": (chosen == held_errors.argmin(1)).float().mean().item(),
        "held_out_choice_chance": 1.0 / len(sets),
        "routes_after": route_statistics(keep)["top_routes"], "routes_before": stats["top_routes"],
        "probe": probe, "history": history, "seconds": seconds,
        "config": {k: _portable(v) for k, v in vars(args).items()},
        "torch_threads": torch.get_num_threads(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "route_supervision.json").write_text(json.dumps(report, indent=2))
    for row in rows:
        print(f"{row['routes']}: held-out action error {row['action_error_ratio']:.3f}x the teacher's")
    if probe:
        print(f"probe (MLP on the unpooled embeddings): held-out action error "
              f"{probe['held_out_action_error_ratio']:.3f}x the teacher's, picks the best set "
              f"{probe['held_out_choice_accuracy']:.0%} of the time; routes: "
              + ", ".join(f"{r['layers']} {r['share']:.0%}" for r in probe["routes"]))
    print(f"held-out: the router picks the input's best set {report['held_out_choice_accuracy']:.0%} of the time "
          f"(chance {report['held_out_choice_chance']:.0%}); routes after: "
          + ", ".join(f"{r['layers']} {r['share']:.0%}" for r in report["routes_after"]))
    return 0


def _portable(value):
    """A path relative to the working directory where it can be (no machine-specific paths in results)."""
    if isinstance(value, Path):
        try:
            return str(value.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(value)
    return value


def _keep(member_row: torch.Tensor, n: int) -> torch.Tensor:
    return member_row.bool().expand(n, -1).clone()


def _set_scores(student, inputs: dict, members: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        batch = student.backbone.embed(inputs)
    logits = student.router.logits(batch.hidden, batch.vision_mask, batch.text_mask)
    return logits.float() @ members.to(logits.device).T  # [B, S]: a set's score, the sum of its layers' logits


def train_router(student, train, errors: torch.Tensor, members: torch.Tensor, args) -> list[dict]:
    """Only the router learns (the backbone stays frozen): cross-entropy against softmax(-error / T)."""
    student.requires_grad_(False)
    student.router.requires_grad_(True)
    student.eval()
    optimizer = torch.optim.AdamW(student.router.parameters(), lr=args.lr)
    targets = torch.softmax(-errors / args.temperature, 1)
    history = []
    steps = args.epochs * ((len(train) + args.batch_size - 1) // args.batch_size)
    with tqdm(total=steps, desc="router", unit="step") as bar:
        for epoch in range(args.epochs):
            order, total = torch.randperm(len(train)), 0.0
            for start in range(0, len(train), args.batch_size):
                rows = order[start:start + args.batch_size]
                inputs, _ = train.rows(rows, args.device)
                scores = _set_scores(student, inputs, members)
                loss = -(targets[rows].to(scores.device) * torch.log_softmax(scores, 1)).sum(1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(rows)
                bar.update(1)
            history.append({"epoch": epoch + 1, "loss": total / len(train)})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    student.requires_grad_(False)
    return history


@torch.no_grad()
def embedding_features(student, data, device: str, batch_size: int = 64) -> torch.Tensor:
    """[N, F]: every vision token's embedding (a fixed count per sample) and the text's mean."""
    features = []
    for start in range(0, len(data), batch_size):
        inputs, _ = data.rows(torch.arange(start, min(start + batch_size, len(data))), device)
        batch = student.backbone.embed(inputs)
        hidden, vision, text = batch.hidden.float(), batch.vision_mask, batch.text_mask
        tokens = hidden[vision].view(hidden.shape[0], -1, hidden.shape[-1]).flatten(1)
        text_mean = (hidden * text[..., None]).sum(1) / text.sum(1, keepdim=True).clamp_min(1)
        features.append(torch.cat([tokens, text_mean], 1).cpu())
    return torch.cat(features)


def fit_probe(student, train, held_out, errors: torch.Tensor, args, hidden: int = 256) -> torch.Tensor:
    """An MLP from the unpooled embeddings to the sets' soft ranking; -> its held-out picks."""
    x_train = embedding_features(student, train, args.device)
    x_held = embedding_features(student, held_out, args.device)
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train, x_held = (x_train - mean) / std, (x_held - mean) / std
    mlp = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], hidden), torch.nn.GELU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(hidden, errors.shape[1]))
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=args.lr, weight_decay=0.05)
    targets = torch.softmax(-errors / args.temperature, 1)
    steps = args.epochs * ((len(x_train) + args.batch_size - 1) // args.batch_size)
    with tqdm(total=steps, desc="probe", unit="step") as bar:
        for _ in range(args.epochs):
            mlp.train()
            order = torch.randperm(len(x_train))
            for start in range(0, len(x_train), args.batch_size):
                rows = order[start:start + args.batch_size]
                loss = -(targets[rows] * torch.log_softmax(mlp(x_train[rows]), 1)).sum(1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.update(1)
    mlp.eval()
    with torch.no_grad():
        return mlp(x_held).argmax(1)


@torch.no_grad()
def choose(student, data, members: torch.Tensor, device: str, batch_size: int) -> torch.Tensor:
    picks = []
    for start in range(0, len(data), batch_size):
        inputs, _ = data.rows(torch.arange(start, min(start + batch_size, len(data))), device)
        picks.append(_set_scores(student, inputs, members).argmax(1).cpu())
    return torch.cat(picks)


if __name__ == "__main__":
    sys.exit(main())
