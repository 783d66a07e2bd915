"""Closed-loop evaluation: the policy node drives the simulated arm over DDS, episode by episode.

Teacher and student are evaluated by the very same node, on the same seeded episodes (the
same cube layouts and start poses, in the same order), so their success rates compare like
for like. Latency, control rate and executed layers come from the node's own status topic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from pydantic import Field

from actdistill_ros.core.model.checkpoint import STUDENT_FORMAT, read_checkpoint_info
from actdistill_ros.core.progress import progress_bar
from actdistill_ros.core.typed_config import Float, Int, config_dataclass
from actdistill_ros.sim.tasks import TaskSelection, task_names

from .driver import Driver, DriverError
from .processes import NodeGroup

EVAL_SEED_OFFSET = 1_000_000  # evaluation layouts: disjoint from recording seeds (record.py)
MODE_TELEOP, MODE_AUTONOMY = 0, 2
SOURCE_HUMAN, SOURCE_POLICY, SOURCE_BLEND = 1, 2, 3


@config_dataclass
class EvalConfig:
    episodes: Int = Field(50, gt=0)  # per task
    seed: Int = 0
    tasks: TaskSelection = "reach"  # a suite (reach, between), all, or task names: sim/tasks.py
    real_time_factor: Float = Field(2.0, gt=0)  # simulated seconds per wall second
    device: str = "auto"
    episode_timeout_s: Float = Field(120.0, gt=0)  # wall-clock guard per episode
    latency_budget_ms: Float = Field(0.0, ge=0)  # the policy node's latency_budget_ms (0: off; students only)
    node_threads: Int = Field(0, ge=0)  # torch CPU threads of the policy node (0: torch's default)
    inference_priority: Int = Field(0, ge=0, le=99)  # the policy node's inference_priority (0: normal scheduling)


def eval_seed(seed: int, index: int) -> int:
    """Episode ``index`` of every task uses the same layout, so tasks differ only in the instruction."""
    return EVAL_SEED_OFFSET + seed * 100_000 + index


def _image_size(checkpoint: str | Path) -> int:
    return int(read_checkpoint_info(checkpoint)["teacher"]["model"]["image_size"])


def _policy_params(checkpoint: str | Path, cfg: EvalConfig, initial_mode: str, ramp_s: float) -> dict:
    # The evaluation measures the policies: per-step limits only, no change limit (as when the
    # results in the README were recorded). Simulated time: /clock and the camera come on separate
    # topics, so a frame can be a period "ahead" of the node's clock; no clock skew to detect here.
    params = {"checkpoint": str(checkpoint), "device": cfg.device, "use_sim_time": True,
              "initial_mode": initial_mode, "ramp_s": ramp_s, "warmup_iterations": 3,
              "limits.max_linear_change": 0.0, "limits.max_angular_change": 0.0, "stamp_skew_tolerance_s": 0.5}
    if cfg.latency_budget_ms > 0:  # (only then: a teacher refuses any budget)
        params["latency_budget_ms"] = float(cfg.latency_budget_ms)
    if cfg.inference_priority:
        params["inference_priority"] = int(cfg.inference_priority)
    return params


@dataclass
class EpisodeResult:
    task: str
    index: int
    success: bool
    steps: int
    rejected_commands: int
    statuses: list = field(default_factory=list)  # the node's PolicyStatus messages in AUTONOMY


@dataclass
class ForwardPass:
    latency_ms: float
    layers_executed: int
    layer_cap: int  # as reported with it (0: no cap)


def forward_passes(statuses: list) -> list[ForwardPass]:
    """One entry per forward pass, from the node's status messages, in order.

    ``status`` repeats the newest pass on every control tick until the next one is ready, so a
    slow pass would be counted once per tick it spans (a p95 of ticks overweights slow passes);
    a pass is identified by the stamp of the image it was computed from (none yet: a zero stamp)."""
    seen, passes = set(), []
    for s in statuses:
        key = (s.prediction_image_stamp.sec, s.prediction_image_stamp.nanosec)
        if s.alarm or s.layers_total == 0 or key == (0, 0) or key in seen:
            continue
        seen.add(key)
        passes.append(ForwardPass(float(s.inference_latency_ms), int(s.layers_executed), int(s.layer_cap)))
    return passes


@contextmanager
def closed_loop_session(checkpoint: str | Path, cfg: EvalConfig, log_dir: Path) -> Iterator[Driver]:
    """The sim and the policy node (AUTONOMY), each in its own process, and the driver that
    resets episodes: up and serving until the ``with`` block ends."""
    rclpy.init()
    try:
        with NodeGroup(log_dir) as group:
            group.start("sim_node", "sim", {"sim.image_size": _image_size(checkpoint), "initial_seed": -1,
                                             "real_time_factor": cfg.real_time_factor})
            group.start("policy_node", "policy", _policy_params(checkpoint, cfg, "autonomy", 0.0),
                        remaps={"image": "camera/image_raw"}, threads=cfg.node_threads or None)
            driver = Driver(group)
            try:
                driver.wait_active("policy", 180)  # (model loading)
                driver.spin_until(lambda: len(driver.statuses) > 0, 30, "the policy node's first status")
                yield driver
            finally:
                driver.close()
    finally:
        rclpy.try_shutdown()


def run_episode(driver: Driver, cfg: EvalConfig, task: str, index: int) -> EpisodeResult:
    """Seeded episode ``index`` of ``task`` (the same layout for every policy), until it ends."""
    driver.statuses.clear()
    episode = driver.reset(eval_seed(cfg.seed, index), task).episode
    final = driver.wait_episode_done(episode, cfg.episode_timeout_s)
    return EpisodeResult(task, index, bool(final.success), int(final.step), int(final.rejected_commands),
                         [s for s in driver.statuses if s.mode == MODE_AUTONOMY])


def evaluate_checkpoint(checkpoint: str | Path, cfg: EvalConfig, log_dir: Path,
                        log: Callable[[str], None] = print, label: str = "") -> dict:
    """Success rate, episode length, latency, control rate (and executed layers) of one checkpoint."""
    tasks = task_names(cfg.tasks)
    with closed_loop_session(checkpoint, cfg, log_dir) as driver:
        per_task: dict[str, dict] = {}
        all_status = []
        bar = progress_bar(len(tasks) * cfg.episodes, f"eval {label or 'policy'}", unit="episode")
        for task in tasks:
            outcomes = []
            for index in range(cfg.episodes):
                outcomes.append(run_episode(driver, cfg, task, index))
                all_status.extend(outcomes[-1].statuses)
                bar.update(1)
            per_task[task] = {"episodes": len(outcomes), "success_rate": float(np.mean([o.success for o in outcomes])),
                              "mean_steps": float(np.mean([o.steps for o in outcomes])),
                              "rejected_commands": int(sum(o.rejected_commands for o in outcomes))}
            log(f"  {label or 'policy'} {task}: success {per_task[task]['success_rate']:.0%} "
                f"over {len(outcomes)} episodes, {per_task[task]['mean_steps']:.1f} steps on average")
        bar.close()
    return _summary(per_task, all_status)


def _summary(per_task: dict[str, dict], statuses: list) -> dict:
    episodes = sum(t["episodes"] for t in per_task.values())
    weighted = lambda key: sum(t[key] * t["episodes"] for t in per_task.values()) / max(1, episodes)  # noqa: E731
    served = [s for s in statuses if not s.alarm and s.layers_total > 0]
    latency = np.array([s.inference_latency_ms for s in served], dtype=np.float64)
    rate = np.array([s.control_rate_hz for s in statuses if s.control_rate_hz > 0], dtype=np.float64)
    layers = np.array([s.layers_executed / s.layers_total for s in served], dtype=np.float64)
    flops = np.array([s.flops_ratio for s in served], dtype=np.float64)
    return {
        "episodes": episodes,
        "success_rate": weighted("success_rate"),
        "mean_steps": weighted("mean_steps"),
        "latency_ms": float(latency.mean()) if latency.size else float("nan"),
        "latency_p95_ms": float(np.percentile(latency, 95)) if latency.size else float("nan"),
        "control_hz": float(np.median(rate)) if rate.size else float("nan"),
        "executed_layer_fraction": float(layers.mean()) if layers.size else float("nan"),
        "flops_ratio": float(flops.mean()) if flops.size else float("nan"),
        "alarm_ticks": int(sum(1 for s in statuses if s.alarm)),
        "rejected_commands": int(sum(t["rejected_commands"] for t in per_task.values())),
        "tasks": per_task,
    }


def handoff_scenario(checkpoint: str | Path, cfg: EvalConfig, log_dir: Path, teleop_steps: int = 3,
                     autonomy_steps: int = 2) -> dict:
    """Teleop start -> autonomy -> human override -> teleop finishes; what a real handover does.

    The scripted human drives the first ``teleop_steps``, lets go while the operator switches to
    AUTONOMY, then grabs the spacemouse again after ``autonomy_steps``: the policy node must hand
    control back at once (a twist above the deadband), and the human completes the task. The
    autonomy phase is short because a good policy finishes an episode in 8 steps (then there is
    nothing left to take over)."""
    rclpy.init()
    try:
        with NodeGroup(log_dir) as group:
            group.start("sim_node", "sim", {"sim.image_size": _image_size(checkpoint), "initial_seed": -1,
                                             "real_time_factor": 1.0})
            group.start("policy_node", "policy", _policy_params(checkpoint, cfg, "teleop", 0.3),
                        remaps={"image": "camera/image_raw"})
            group.start("teleop_expert_node", "teleop_expert", {"noise_m": 0.0})
            driver = Driver(group)
            try:
                driver.watch_teleop()  # subscribe now: discovery must be done before the override
                driver.wait_active("policy", 180)  # (model loading)
                driver.spin_until(lambda: len(driver.statuses) > 0, 30, "the policy node's first status")
                driver.set_parameter("teleop_expert", "enabled", False)
                episode = driver.reset(eval_seed(cfg.seed, 0), task_names(cfg.tasks)[0]).episode
                driver.set_parameter("teleop_expert", "enabled", True)
                step_now = lambda: driver.episodes[episode].step if episode in driver.episodes else 0  # noqa: E731
                driver.spin_until(lambda: step_now() >= teleop_steps, 60, "the teleop phase")
                driver.set_parameter("teleop_expert", "enabled", False)
                driver.set_mode(MODE_AUTONOMY, "handoff scenario: operator starts autonomy")
                start = step_now()
                driver.spin_until(lambda: step_now() >= start + autonomy_steps or driver.episodes[episode].done, 60,
                                  "the autonomy phase")
                if driver.episodes[episode].done:
                    raise DriverError(f"episode {episode} ended during the autonomy phase, before the human could "
                                      f"take over: shorten autonomy_steps ({autonomy_steps})")
                driver.watch_teleop()  # re-arm: the expert was silent during autonomy
                driver.set_parameter("teleop_expert", "enabled", True)  # the human grabs the spacemouse
                driver.spin_until(lambda: driver.first_override_action is not None, 30, "the first override twist")
                driver.spin_until(lambda: any(t.to_mode == MODE_TELEOP for t in driver.transitions[1:]), 30,
                                  "the override back to teleop")
                after = driver.first_override_action
                driver.spin_until(lambda: any(a.source == SOURCE_HUMAN for a in driver.actions[after:]), 30,
                                  "the first human command after the override")
                ticks_to_human = next(i for i, a in enumerate(driver.actions[after:]) if a.source == SOURCE_HUMAN)
                final = driver.wait_episode_done(episode, 60)
                sources = [int(a.source) for a in driver.actions]
            finally:
                driver.close()
    finally:
        rclpy.try_shutdown()
    return {
        "transitions": [{"from": int(t.from_mode), "to": int(t.to_mode), "reason": t.reason}
                        for t in driver.transitions],
        "policy_commands": sources.count(SOURCE_POLICY) + sources.count(SOURCE_BLEND),
        "human_commands": sources.count(SOURCE_HUMAN),
        # commands the arm still got from the policy after the human's first twist reached the bus
        "ticks_from_override_to_human_command": ticks_to_human,
        "episode_success": bool(final.success),
        "episode_steps": int(final.step),
    }


def find_baselines(directory: str | Path) -> dict[str, Path]:
    """The student checkpoints in ``directory``'s subdirectories (a distillation job's
    ``baselines/``), by subdirectory name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"baselines directory not found: {directory}")
    found = {p.name: p for p in sorted(directory.iterdir())
             if (p / "config.json").is_file() and read_checkpoint_info(p).get("format") == STUDENT_FORMAT}
    if not found:
        raise FileNotFoundError(f"{directory}: no student checkpoint in its subdirectories (expected e.g. static/, "
                                "random/ from a distillation job with baselines: true)")
    return found


def evaluate(teacher: str | Path, student: str | Path, cfg: EvalConfig, out_dir: str | Path,
             log: Callable[[str], None] = print, handoff: bool = True,
             baselines: dict[str, Path] | None = None) -> dict:
    """Teacher, student and any ``baselines`` ({name: checkpoint}) on the same episodes (+ the
    handoff scenario with the student)."""
    out = Path(out_dir)
    result: dict = {"config": asdict(cfg)}
    for label, checkpoint in (("teacher", teacher), ("student", student)):
        log(f"closed loop: {label} ({cfg.episodes} episodes per task)")
        result[label] = evaluate_checkpoint(checkpoint, cfg, out / "logs" / label, log, label)
    if baselines:
        result["baselines"] = {}
        for name, checkpoint in baselines.items():
            log(f"closed loop: baseline {name} ({cfg.episodes} episodes per task)")
            result["baselines"][name] = evaluate_checkpoint(checkpoint, cfg, out / "logs" / f"baseline_{name}", log,
                                                            f"baseline {name}")
    result["tasks"] = {task: {label: result[label]["tasks"][task] for label in ("teacher", "student")}
                       for task in result["student"]["tasks"]}
    for name, r in result.get("baselines", {}).items():
        for task, both in result["tasks"].items():
            both[f"baseline {name}"] = r["tasks"][task]
    if handoff:
        log("handoff scenario: teleop -> autonomy -> human override -> teleop")
        result["handoff"] = handoff_scenario(student, cfg, out / "logs" / "handoff")
    return result
