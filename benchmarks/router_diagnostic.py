"""Why does a fixed route beat the learned router? Separate the routes from the objective.

Takes a distilled student (learned router, after stage 2), freezes its router and fine-tunes the
backbone with the action head's task loss alone, the recipe and budget of the `static` and `random`
baselines (core/training/baselines.py: `finetune_routed`, the student's stage-2 optimiser settings). If the
held-out error then falls to the baselines' level, the routes were not the problem: the stage-2
objective was. The router reads the embedded inputs, which the fine-tuning also changes, so the
executed fraction can drift: it is reported beside the error. ``--freeze-embedding`` keeps every
part of the backbone before the decoder layers as it is (TinyVLA: vision stem, text embedding),
so that the routes cannot move at all.

First, without any training, the same student at a uniform depth: every sample runs its own
``k`` highest-scoring layers (``min_layers = max_layers = k``) instead of as many as pass the
threshold. If that beats the routed student at the same mean depth, the router's per-input choice
of *how many* layers to run is what costs accuracy. Then, on the same weights, does an input's
*own* route carry information? Each held-out input runs (a) its own route, (b) another input's
route (the routes shuffled among the inputs: the same mix of routes, no information about the
input; 5 shuffles), (c) the most common route for every input, (d) every fixed set of layers of
the student's depth (the best of them was picked on these very inputs: an optimistic bound for a
static route on this backbone), (e) each input its own best fixed set, among the routes the router
uses and among all (oracles: what a perfect router could reach on these weights at this depth; a
loose bound: the minimum also picks up differences between routes no router could predict from
the input, the more so the more sets it picks from; route_supervision.py asks what is learnable).
If (a) is no better than (b), per-input routing earns nothing on these weights; the gap between
(d) and (e) is what a better router could gain. The same, per task and per suite of the simulated
arm (an instruction of another dataset is its own group): does the router give the relational
``between`` tasks other routes or more depth than the reach tasks, and does that pay there?
``--depth-only`` stops after these tables (no training).

    python benchmarks/router_diagnostic.py --run runs/shipped/distill --out runs/router_diagnostic --threads 1
    python benchmarks/router_diagnostic.py --run runs/shipped/distill --out runs/router_diagnostic_frozen \
        --freeze-embedding --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

from actdistill_ros.core.config import OptimConfig
from actdistill_ros.core.data.dataset import EpisodeDataset
from actdistill_ros.core.evaluation.bench import BenchConfig, benchmark
from actdistill_ros.core.model.checkpoint import load_student, save_student
from actdistill_ros.core.model.router import top_layers_mask
from actdistill_ros.core.progress import progress_bar
from actdistill_ros.core.training.baselines import finetune_routed
from actdistill_ros.core.training.route_stats import route_statistics
from actdistill_ros.core.training.runs import read_finished_job
from actdistill_ros.core.training.stages import evaluate, predict
from actdistill_ros.sim.tasks import SUITES, TASKS, task_names

AFTER_THE_LAYERS = ("layers", "final_norm", "action_head", "normalizer", "rotary")
ROW_KEYS = ("flops_ratio", "speedup", "action_error_ratio", "executed_layer_fraction", "layer_frequency",
            "distinct_routes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("."),
                        help="a distillation job's output_dir (teacher/, student/, dataset/)")
    parser.add_argument("--student", type=Path, help="the student to diagnose (default: RUN/student)")
    parser.add_argument("--teacher", type=Path, help="its teacher (default: RUN/teacher)")
    parser.add_argument("--dataset", type=Path, help="its dataset (default: RUN/dataset)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--freeze-embedding", action="store_true",
                        help="train only the decoder layers and the head: the router's inputs, and so its routes, stay")
    parser.add_argument("--depth-only", action="store_true", help="only the uniform-depth table (no fine-tuning)")
    parser.add_argument("--reference", choices=("demonstrations", "teacher"), default="demonstrations",
                        help="route table errors against the recorded actions or the teacher's (in units of "
                             "the teacher's own error on the recordings either way): is an oracle's gain label noise?")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--tasks", default="all", help="the simulated-arm tasks the demonstrations were recorded "
                        "with (sim/tasks.py): names an instruction two tasks share (reach and anywhere)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    student_dir = args.student or args.run / "student"
    finished = read_finished_job(args.run, args.teacher, args.dataset, student_dir)
    job, teacher, train, held_out = finished.config, finished.teacher, finished.train, finished.held_out
    teacher_dir, dataset_dir = finished.teacher_dir, finished.dataset_dir
    optim = OptimConfig(**job["student"])
    student = load_student(student_dir).to(args.device)
    student.router.requires_grad_(False)
    depth = uniform_depth(student, teacher, held_out, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "uniform_depth.json").write_text(json.dumps(depth, indent=2))
    for row in depth["rows"]:
        print(f"{row['route']}: layers run {row['executed_layer_fraction']:.3f}, held-out action error "
              f"{row['action_error_ratio']:.3f}x the teacher's")
    reference = predict(teacher, held_out, routed=False)[0] if args.reference == "teacher" else None
    groups = task_labels(dataset_dir, job["held_out_fraction"], held_out, args.tasks)
    teacher_errors = sample_errors(teacher, held_out)
    information = route_information(student, held_out, depth["teacher_action_mse"], args.device, reference=reference,
                                    groups=groups, teacher_errors=teacher_errors)
    information["reference"] = args.reference
    name = "route_information" + ("" if args.reference == "demonstrations" else f"_{args.reference}") + ".json"
    (args.out / name).write_text(json.dumps(information, indent=2))
    for row in information["rows"]:
        spread = f" (sd {row['action_error_ratio_sd']:.3f} over {row['repeats']})" if "repeats" in row else ""
        print(f"{row['routes']}: held-out action error {row['action_error_ratio']:.3f}x the teacher's{spread}")
    for group in information["by_own_route"]:
        print(f"inputs the router sends to {group['route']} ({group['share']:.0%}): {group['own_error_ratio']:.3f}x "
              f"there, {group['most_common_route_error_ratio']:.3f}x on the most common route")
    suites = [_suite_of(g) for g in groups]
    if len(set(suites)) > 1:
        allocation = depth_by_group(student, held_out, suites, teacher_errors, args.device)
        (args.out / "depth_by_suite.json").write_text(json.dumps(allocation, indent=2))
        for row in allocation["depth_table"]:
            print(f"{row['group']} at its own top {row['layers']}: {row['error_ratio']:.3f}x the teacher's error there")
        for row in allocation["allocations"]:  # the Pareto front, fewest layers first
            print(f"depth by suite {row['layers_by_group']} ({row['layers_per_sample']:.2f} layers): "
                  f"{row['action_error_ratio']:.3f}x overall")
    for key in ("by_suite", "by_task"):
        for g in information[key]:
            print(f"{g['group']} ({g['share']:.0%} of the inputs): {g['layers_per_sample']:.2f} layers, routes "
                  f"{g['top_route']} {g['top_route_share']:.0%}; error (the teacher's on these inputs = 1) own "
                  f"{g['own_error_ratio']:.3f}x, most common route {g['most_common_route_error_ratio']:.3f}x, "
                  f"best fixed {g['best_fixed']} {g['best_fixed_error_ratio']:.3f}x")
    if args.depth_only:
        return 0

    bench_cfg = BenchConfig(device=args.device, latency_iters=30, curve=False, eval_samples=0)
    before = benchmark(teacher_dir, student_dir, dataset_dir, bench_cfg)
    started = time.monotonic()
    frozen = tuple(module for name, module in student.backbone.named_children()
                   if args.freeze_embedding and name not in AFTER_THE_LAYERS)
    result = finetune_routed(student, train, optim, args.out / "runs", "task_finetune", frozen=frozen)
    seconds = time.monotonic() - started
    tuned_dir = save_student(result.model.cpu(), args.out / "student")
    after = benchmark(teacher_dir, tuned_dir, dataset_dir, bench_cfg)

    report = {"before": {k: before[k] for k in ROW_KEYS}, "after_task_finetune": {k: after[k] for k in ROW_KEYS},
              "frozen": [name for name, module in student.backbone.named_children() if module in frozen],
              "finetune_steps": result.steps, "finetune_seconds": seconds, "optim": job["student"],
              "machine": after["config"]["machine"], "torch_threads": torch.get_num_threads()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "router_diagnostic.json").write_text(json.dumps(report, indent=2))
    for name in ("before", "after_task_finetune"):
        row = report[name]
        print(f"{name}: layers run {row['executed_layer_fraction']:.3f}, FLOPs {row['flops_ratio']:.3f}, "
              f"held-out action error {row['action_error_ratio']:.3f}x the teacher's, {row['distinct_routes']} routes")
    return 0


def uniform_depth(student, teacher, held_out, device: str) -> dict:
    """The routed student as trained, then at every uniform depth k (each sample's own top k)."""
    teacher_mse = evaluate(teacher.to(device), held_out, routed=False)["action_mse"]
    rows = []
    trained = (student.min_layers, student.max_layers)
    for k in [None, *range(1, student.num_layers + 1)]:
        student.min_layers, student.max_layers = trained if k is None else (k, k)
        result = evaluate(student, held_out, routed=True)
        rows.append({"route": "as trained (threshold)" if k is None else f"top {k} per sample", "layers": k,
                     "executed_layer_fraction": result["executed_layer_fraction"],
                     "action_mse": result["action_mse"], "action_error_ratio": result["action_mse"] / teacher_mse})
    student.min_layers, student.max_layers = trained
    return {"teacher_action_mse": teacher_mse, "held_out_samples": len(held_out), "rows": rows}


@torch.no_grad()
def depth_by_group(student, held_out, groups: list[str], teacher_errors: torch.Tensor, device: str,
                   batch_size: int = 64) -> dict:
    """How much depth should each group (suite) get? Each input at every uniform depth k (its own
    top k layers by the router's scores), the error per group, then every allocation of one depth
    per group, best first, with its mean layers per sample: what a router that knew only the group
    and spent the depth where the action error needs it would reach (chosen on these inputs: a
    bound), against the depth the router gave each group."""
    student.eval()
    scores = []
    for start in range(0, len(held_out), batch_size):
        inputs, _ = held_out.rows(torch.arange(start, min(start + batch_size, len(held_out))), device)
        scores.append(student.gate_probs(student.backbone.embed(inputs)).float().cpu())
    scores = torch.cat(scores)
    errors = {k: run_routes(student, held_out, top_layers_mask(scores, k), device)
              for k in range(1, student.num_layers + 1)}
    names = list(dict.fromkeys(groups))
    masks = {g: torch.tensor([n == g for n in groups]) for g in names}
    teacher_mse = teacher_errors.mean().item()
    table = [{"group": g, "layers": k,
              "error_ratio": errors[k][masks[g]].mean().item() / teacher_errors[masks[g]].mean().item()}
             for g in names for k in errors]
    allocations = []
    for depths in itertools.product(errors, repeat=len(names)):
        per_sample = torch.zeros(len(groups))
        layers = 0.0
        for g, k in zip(names, depths, strict=True):
            per_sample[masks[g]] = errors[k][masks[g]]
            layers += k * masks[g].float().mean().item()
        allocations.append({"layers_by_group": dict(zip(names, depths, strict=True)), "layers_per_sample": layers,
                            "action_error_ratio": per_sample.mean().item() / teacher_mse})
    allocations.sort(key=lambda a: (a["layers_per_sample"], a["action_error_ratio"]))
    # the Pareto front: every allocation better than all with fewer or as many layers
    front, best = [], float("inf")
    for a in allocations:
        if a["action_error_ratio"] < best:
            front.append(a)
            best = a["action_error_ratio"]
    return {"groups": {g: int(masks[g].sum()) for g in names}, "depth_table": table, "allocations": front}


@torch.no_grad()
def run_routes(student, data, keep: torch.Tensor, device: str, batch_size: int = 64,
               reference: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample held-out action MSE [N] (normalised units, as ``training.evaluate``) with ``keep`` [N, L]
    forced; against the recorded actions, or ``reference`` (normalised chunks [N, H, A], e.g. the teacher's)."""
    student.eval()
    normalizer = student.backbone.normalizer
    errors = []
    for start in range(0, len(data), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(data)))
        inputs, targets = data.rows(rows, device)
        batch = student.backbone.embed(inputs)
        predicted = student.executor.run(batch, keep[rows]).float()
        target = (normalizer.normalize(targets.to(predicted.device)).float() if reference is None
                  else reference[rows].to(predicted.device).float())
        errors.append(((predicted - target) ** 2).mean((1, 2)).cpu())
    return torch.cat(errors)


def task_labels(dataset_dir: Path, held_out_fraction: float, held_out, tasks: str = "all") -> list[str]:
    """Each held-out sample's simulated-arm task (its instruction where no task has it), by the
    sample ids ``split_dataset`` gave: held-out episode e has ids (n_train + e) * 100000 + step.
    The ``anywhere`` tasks say what the ``reach`` tasks say: an instruction two tasks share is
    labelled with the first of ``tasks`` (the selection the demonstrations were recorded with)."""
    train, held_episodes = EpisodeDataset.load(dataset_dir).split(held_out_fraction, seed=0)
    task_of: dict[str, str] = {}
    for name in task_names(tasks):
        spec = TASKS[name]
        for variant in range(len(spec.templates)):
            task_of.setdefault(spec.instruction(variant), name)
    episodes = (held_out.sample_ids // 100_000 - len(train.episodes)).tolist()
    instructions = [held_episodes.episodes[e].instruction for e in episodes]
    return [task_of.get(text, text) for text in instructions]


@torch.no_grad()
def sample_errors(teacher, data, batch_size: int = 64) -> torch.Tensor:
    """The teacher's per-sample action MSE [N] against the recordings (normalised units)."""
    predicted, _ = predict(teacher, data, routed=False, batch_size=batch_size)
    return ((predicted - teacher.normalizer.normalize(data.targets).float().cpu()) ** 2).mean((1, 2))


def route_information(student, held_out, teacher_mse: float, device: str, shuffles: int = 5,
                      reference: torch.Tensor | None = None, groups: list[str] | None = None,
                      teacher_errors: torch.Tensor | None = None) -> dict:
    """Own routes against shuffled, most common and every fixed route of the same depth (module doc);
    errors against the recorded actions or ``reference`` (in units of ``teacher_mse`` either way).
    With ``groups`` (a label per sample) and ``teacher_errors`` (per sample): the same per group."""
    _, executed = predict(student, held_out, routed=True)
    executed = executed.bool().cpu()
    stats = route_statistics(executed)
    depth = int(round(stats["layers_per_sample"]["mean"]))

    per_sample = {}

    def row(name: str, keep: torch.Tensor) -> dict:
        per_sample[name] = run_routes(student, held_out, keep, device, reference=reference)
        mse = per_sample[name].mean().item()
        return {"routes": name, "action_mse": mse, "action_error_ratio": mse / teacher_mse,
                "executed_layer_fraction": keep.float().mean().item()}

    rows = [row("own route (as trained)", executed)]
    generator = torch.Generator().manual_seed(0)
    shuffled = [row("shuffled", executed[torch.randperm(len(executed), generator=generator)]) for _ in range(shuffles)]
    ratios = torch.tensor([r["action_error_ratio"] for r in shuffled])
    rows.append({**shuffled[0], "routes": "another input's route (shuffled)", "action_mse": None,
                 "action_error_ratio": ratios.mean().item(), "action_error_ratio_sd": ratios.std().item(),
                 "repeats": shuffles})
    common = stats["top_routes"][0]["layers"]
    common_name = f"most common route {common} for every input"
    rows.append(row(common_name, _fixed(common, executed)))
    # did the router send each input where it does better? inputs grouped by their own route
    by_route = []
    for share in stats["top_routes"]:
        mask = (executed == _fixed(share["layers"], executed[:1])).all(1)
        by_route.append({"route": share["layers"], "share": share["share"],
                         "own_error_ratio": per_sample["own route (as trained)"][mask].mean().item() / teacher_mse,
                         "most_common_route_error_ratio": per_sample[common_name][mask].mean().item() / teacher_mse})
    routes = list(itertools.combinations(range(student.num_layers), depth))
    fixed = []
    with progress_bar(len(routes), "every fixed set", unit="set") as bar:  # 56 sets x 1440 inputs at default size
        for route in routes:
            fixed.append(row(f"fixed {list(route)}", _fixed(route, executed)))
            bar.update()
    best = min(fixed, key=lambda r: r["action_error_ratio"])
    rows.append({**best, "routes": f"best fixed set of {depth} ({best['routes'][6:]}; picked on these inputs)"})
    # oracles: loose bounds (a minimum per input also picks up what no router could predict; module doc)
    used = [f"fixed {list(share['layers'])}" for share in stats["top_routes"]
            if len(share["layers"]) == depth and f"fixed {list(share['layers'])}" in per_sample]
    for name, candidates in ((f"oracle among the router's own routes ({len(used)})", used),
                             (f"oracle among every set of {depth} ({len(fixed)})", [r["routes"] for r in fixed])):
        oracle = torch.stack([per_sample[c] for c in candidates]).min(0).values.mean().item()
        rows.append({"routes": f"{name}: each input its best (a bound for any router on these weights)",
                     "action_mse": oracle, "action_error_ratio": oracle / teacher_mse,
                     "executed_layer_fraction": depth / student.num_layers})
    result = {"teacher_action_mse": teacher_mse, "held_out_samples": len(held_out), "depth": depth,
              "route_shares": stats["top_routes"], "rows": rows, "by_own_route": by_route, "every_fixed_set": fixed,
              "by_task": [], "by_suite": []}
    if groups is not None and teacher_errors is not None:
        fixed_names = [r["routes"] for r in fixed]
        labels = {"by_task": groups, "by_suite": [_suite_of(g) for g in groups]}
        for key, names in labels.items():
            for name in dict.fromkeys(names):
                mask = torch.tensor([n == name for n in names])
                result[key].append(_group_row(name, mask, executed, per_sample, teacher_errors, common_name,
                                              fixed_names))
    return result


def _suite_of(task: str) -> str:
    return next((suite for suite, specs in SUITES.items() if task in {s.name for s in specs}), "other")


def _group_row(name: str, mask: torch.Tensor, executed: torch.Tensor, per_sample: dict, teacher_errors: torch.Tensor,
               common_name: str, fixed_names: list[str]) -> dict:
    """One group's depth, favourite route and errors (in units of the teacher's error on the group)."""
    teacher = teacher_errors[mask].mean().item()
    routes = route_statistics(executed[mask])["top_routes"]
    best = min(fixed_names, key=lambda n: per_sample[n][mask].mean().item())
    return {"group": name, "samples": int(mask.sum()), "share": mask.float().mean().item(),
            "layers_per_sample": executed[mask].sum(1).float().mean().item(),
            "top_route": routes[0]["layers"], "top_route_share": routes[0]["share"],
            "own_error_ratio": per_sample["own route (as trained)"][mask].mean().item() / teacher,
            "most_common_route_error_ratio": per_sample[common_name][mask].mean().item() / teacher,
            "best_fixed": best[len("fixed "):],
            "best_fixed_error_ratio": per_sample[best][mask].mean().item() / teacher}


def _fixed(route, like: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros_like(like)
    keep[:, list(route)] = True
    return keep


if __name__ == "__main__":
    sys.exit(main())
