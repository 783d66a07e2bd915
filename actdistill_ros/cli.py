"""``actdistill``: the command line of the ROS-free core (train, distill, benchmark, demo)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core.config import MODEL_PRESETS, TeacherTrainConfig
from .core.data.dataset import DatasetError
from .core.model.checkpoint import CheckpointError
from .core.typed_config import ConfigError, load_config, to_dict


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML/JSON file with config keys (unknown keys are errors)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, dotted for nesting (repeatable), e.g. student.epochs=5")


def _cmd_make_synthetic(args) -> int:
    from .core.data.synthetic import make_dataset

    ds = make_dataset(args.episodes, steps=args.steps, image_size=args.image_size, seed=args.seed)
    ds.save(args.out)
    print(f"wrote {len(ds.episodes)} episodes, {ds.num_steps} steps to {args.out}")
    return 0


def _cmd_train_teacher(args) -> int:
    from .core.training.runs import run_teacher_training

    base = {"model": to_dict(MODEL_PRESETS[args.preset])}
    if args.device:
        base["device"] = args.device
    cfg = load_config(TeacherTrainConfig, args.config, args.overrides, base=base)
    teacher_dir = run_teacher_training(args.dataset, args.out, cfg, restart=args.restart)
    print(f"teacher checkpoint: {teacher_dir}")
    print(json.dumps(json.loads((Path(args.out) / "runs" / "teacher_done.json").read_text()), indent=2))
    return 0


def _cmd_distill(args) -> int:
    from .distill_job import load_distill_job_config, run_distill_job

    flags = {key: value for key, value in (("dataset", args.dataset), ("teacher", args.teacher),
                                           ("output_dir", args.out), ("device", args.device)) if value is not None}
    if args.bags:  # repeated --bags add up
        flags["bags"] = args.bags[0] if len(args.bags) == 1 else list(args.bags)
    if args.restart:
        flags["restart"] = True
    cfg = load_distill_job_config(args.config, list(args.overrides), flags)
    result = run_distill_job(cfg, progress=_print_progress)
    print(f"student checkpoint: {result.student_dir}")
    print(f"report: {result.report_md}")
    keys = ("flops_ratio", "speedup", "executed_layer_fraction", "action_error_ratio", "episodes", "steps")
    print(json.dumps({k: result.report.get(k) for k in keys}, indent=2))
    return 0


def _print_progress(event: dict) -> None:
    if event.get("state") == "skipped":  # resumed: the stage's earlier result is used
        print(f"[{event.get('stage')}] skipped (done)", flush=True)
    elif event.get("state") in {"started", "done", "failed"}:
        print(f"[{event.get('stage')}] {event.get('state')}", flush=True)
    elif event.get("state") == "warning":
        print(f"[{event.get('stage')}] warning: {event.get('message')}", flush=True)
    elif event.get("state") == "verdict":
        print(f"[{event.get('stage')}] verdict: {event.get('message')}", flush=True)
    for skipped in event.get("skipped") or ():  # on the console too, not only in report.json
        print(f"  skipped: {skipped['reason']}", flush=True)


def _cmd_bench(args) -> int:
    from .core.demo import write_bench_outputs
    from .core.evaluation.bench import BenchConfig, benchmark, benchmark_markdown

    cfg = BenchConfig(device=args.device, warmup=args.warmup, latency_iters=args.iters,
                      eval_samples=args.eval_samples, threads=args.threads)
    result = benchmark(args.teacher, args.student, args.dataset, cfg)
    print(benchmark_markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    if args.out:
        write_bench_outputs(result, args.out)
    return 0


def _cmd_demo(args) -> int:
    from .core.demo import run_demo
    from .core.evaluation.bench import BenchConfig, benchmark_markdown

    preset = "quick" if args.quick else args.preset
    result = run_demo(args.out, preset=preset, device=args.device, seed=args.seed,
                      bench=BenchConfig(device=args.bench_device, threads=args.threads))
    print()
    print(benchmark_markdown(result))
    print(f"outputs in {args.out}: teacher/, student/, bench.json, bench.md, *.png")
    return 0


def _cmd_sim_demos(args) -> int:
    from .sim_ros.record import RecordConfig, record_demonstrations

    cfg = RecordConfig(episodes=args.episodes, seed=args.seed, tasks=args.tasks, storage=args.storage,
                       image_size=args.image_size, real_time_factor=args.real_time_factor,
                       **({} if args.actuation_noise_m is None else {"actuation_noise_m": args.actuation_noise_m}))
    summary = record_demonstrations(args.out, cfg)
    print(f"{len(summary['episodes'])} episodes in {args.out / 'bags'} "
          f"(expert success {summary['expert_success_rate']:.0%}); summary: {args.out / 'record_summary.json'}")
    return 0


def _cmd_eval(args) -> int:
    from .core.model.checkpoint import default_student_path, default_teacher_path
    from .sim_ros.closed_loop import EvalConfig, evaluate, find_baselines
    from .sim_ros.eval_report import eval_markdown

    episodes = args.episodes if args.episodes is not None else (3 if args.quick else 50)
    cfg = EvalConfig(episodes=episodes, seed=args.seed, tasks=args.tasks, device=args.device,
                     real_time_factor=args.real_time_factor)
    baselines = find_baselines(args.baselines) if args.baselines else None
    result = evaluate(args.teacher or default_teacher_path(), args.student or default_student_path(), cfg,
                      args.out, handoff=not args.no_handoff, baselines=baselines)
    markdown = eval_markdown(result)
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval.md").write_text(markdown)
    json_path = args.json or args.out / "eval.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _cmd_sim_job(args) -> int:
    from .sim_ros.main_job import run_main_job

    run_main_job(args.out, preset="quick" if args.quick else "default", seed=args.seed, device=args.device,
                 eval_episodes=args.eval_episodes, log=lambda line: print(line, flush=True), baselines=args.baselines,
                 train_teacher=args.train_teacher, threads=args.threads, tasks=args.tasks, demos=args.demos,
                 teacher_epochs=args.teacher_epochs)
    print(f"outputs in {args.out}: demos/bags, distill/ (teacher, student, report), eval.json, eval.md")
    return 0


def _add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="episode layouts are drawn from this seed")
    p.add_argument("--tasks", default="reach", help="a suite (reach, between), 'all', or task names, comma-separated "
                   "(reach_red, ..., between_red_blue)")
    p.add_argument("--real-time-factor", type=float, default=None, help="simulated seconds per wall second")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actdistill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-synthetic", help="write the synthetic 'move to the <colour> cube' dataset")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_make_synthetic)

    p = sub.add_parser("train-teacher", help="behaviour-clone a TinyVLA teacher on a dataset directory")
    p.add_argument("--dataset", type=Path, required=True, help="episode dataset directory (dataset.json)")
    p.add_argument("--out", type=Path, required=True, help="output directory (teacher/ and runs/); resumable")
    p.add_argument("--preset", choices=sorted(MODEL_PRESETS), default="default", help="model size preset")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--restart", action="store_true", help="start over in --out (a rerun with other settings is "
                   "an error without it)")
    _add_config_args(p)
    p.set_defaults(func=_cmd_train_teacher)

    p = sub.add_parser("distill", help="rosbags or a dataset -> stage 1 + stage 2 -> exported student + report",
                       description="Keys and defaults: config/distill.yaml and the README table. Flags below are "
                                   "shorthands for the keys of the same meaning.")
    p.add_argument("--dataset", help="episode dataset directory (key: dataset)")
    p.add_argument("--bags", action="append", help="rosbag2 directory/file or a directory of bags; repeat for "
                   "several (key: bags)")
    p.add_argument("--teacher", help="teacher checkpoint directory (key: teacher)")
    p.add_argument("--out", help="output directory; rerun to resume (key: output_dir)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (key: device)")
    p.add_argument("--restart", action="store_true", help="start over in --out (key: restart)")
    _add_config_args(p)
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("bench", help="teacher vs student: FLOPs, latency, layers, action error, keep-ratio curve")
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--student", type=Path, required=True)
    p.add_argument("--dataset", type=Path, required=True, help="evaluated on its held-out episodes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--iters", type=int, default=50, help="timed batch-1 passes per model")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--eval-samples", type=int, default=400)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--json", type=Path, help="write the result JSON here")
    p.add_argument("--out", type=Path, help="also write bench.json, bench.md and PNG plots here")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("demo", help="the embedded default end to end: data -> teacher -> student -> benchmark")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--preset", choices=["quick", "default"], default="default")
    p.add_argument("--quick", action="store_true", help="same as --preset quick (a few minutes)")
    p.add_argument("--device", default="auto", help="training device")
    p.add_argument("--bench-device", default="cpu", help="benchmark device")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("sim-demos", help="record scripted-teleop demonstrations of the simulated arm to rosbags")
    p.add_argument("--out", type=Path, required=True, help="bags go to OUT/bags, plus record_summary.json")
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--actuation-noise-m", type=float,
                   help="the arm's tracking noise while recording (std per axis and step, m; not in the recorded "
                        "commands): demos that show corrections (DART); default 0.006")
    _add_sim_args(p)
    p.set_defaults(func=_cmd_sim_demos, real_time_factor=5.0)

    p = sub.add_parser("eval", help="closed loop over DDS: teacher vs student driving the simulated arm")
    p.add_argument("--teacher", type=Path, help="teacher checkpoint (default: the shipped one)")
    p.add_argument("--student", type=Path, help="student checkpoint (default: the shipped one)")
    p.add_argument("--episodes", type=int, help="seeded episodes per task (default 50; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="3 episodes per task")
    p.add_argument("--json", type=Path, help="write the result JSON here (default OUT/eval.json)")
    p.add_argument("--out", type=Path, default=Path("runs/eval"), help="eval.md, eval.json and node logs")
    p.add_argument("--device", default="auto", help="policy node device")
    p.add_argument("--no-handoff", action="store_true", help="skip the teleop/autonomy handoff scenario")
    p.add_argument("--baselines", type=Path, help="also run every student checkpoint under this directory (a "
                                                  "distillation job's baselines/) on the same episodes")
    _add_sim_args(p)
    p.set_defaults(func=_cmd_eval, real_time_factor=2.0)

    p = sub.add_parser("sim-job", help="the main job: record demos -> teacher -> student -> closed-loop eval")
    p.add_argument("--out", type=Path, default=Path("runs/sim_job"))
    p.add_argument("--quick", action="store_true", help="a few minutes; too little training for a good policy")
    p.add_argument("--device", default="auto", help="training and policy device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, help="episodes per task (default: the preset's)")
    p.add_argument("--baselines", action="store_true",
                   help="also distil the baselines (static pruning, random routes) and drive the arm with each")
    p.add_argument("--train-teacher", action="store_true",
                   help="train the teacher on the recorded demonstrations too (default: distil the shipped teacher)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads for training (0: one per core; 1 when other work shares the machine)")
    p.add_argument("--tasks", default="reach", help="tasks to record and evaluate: a suite (reach, between), 'all', "
                   "or task names, comma-separated; other than reach needs --train-teacher")
    p.add_argument("--demos", type=int, help="demonstrations to record (default: the preset's, 600)")
    p.add_argument("--teacher-epochs", type=int, help="teacher training epochs (default: the preset's, 30)")
    p.set_defaults(func=_cmd_sim_job)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, DatasetError, ValueError, OSError, RuntimeError) as exc:
        print(f"actdistill {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
