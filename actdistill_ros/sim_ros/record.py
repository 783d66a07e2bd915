"""Record teleoperated demonstrations of the simulated tabletop to rosbag2 files.

The same topics a user records on hardware: camera images, the instruction, and the teleop
stream (TwistStamped + gripper) of the scripted "human". One bag per episode.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import rclpy
from pydantic import Field

from actdistill_ros.core.progress import progress_bar
from actdistill_ros.core.typed_config import Float, Int, config_dataclass
from actdistill_ros.sim.tasks import TaskSelection, task_names

from .driver import Driver
from .processes import NodeGroup

RECORDED_TOPICS = ["/camera/image_raw", "/instruction", "/teleop/twist", "/teleop/gripper"]
RECORD_SEED_OFFSET = 10_000  # demonstration layouts never reuse evaluation seeds (see evaluate.py)


@config_dataclass
class RecordConfig:
    episodes: Int = Field(60, gt=0)
    seed: Int = 0
    tasks: TaskSelection = "reach"  # a suite (reach, between), all, or task names: sim/tasks.py
    storage: str = "mcap"
    image_size: Int = Field(64, gt=0)
    real_time_factor: Float = Field(5.0, gt=0)
    expert_noise_m: Float = Field(0.003, ge=0)  # the human's own jitter (in the recorded commands)
    # the arm's imperfect tracking while recording (not in the recorded commands): the demos then
    # show corrections from off-course states (DART); see SimConfig.actuation_noise_m
    actuation_noise_m: Float = Field(0.006, ge=0)


def episode_seed(seed: int, index: int) -> int:
    return RECORD_SEED_OFFSET + seed * 100_000 + index


def record_demonstrations(out_dir: str | Path, cfg: RecordConfig) -> dict:
    """Record ``cfg.episodes`` episodes (tasks in turn) into ``out_dir/bags``, with a bar; returns a
    summary."""
    out = Path(out_dir)
    tasks = task_names(cfg.tasks)
    summary_path = out / "record_summary.json"
    rclpy.init()
    try:
        with NodeGroup(out / "logs") as group:
            group.start("sim_node", "sim", {"sim.image_size": cfg.image_size, "initial_seed": -1,
                                             "real_time_factor": cfg.real_time_factor,
                                             "sim.actuation_noise_m": cfg.actuation_noise_m},
                        remaps={"servo/delta_twist_cmds": "/teleop/twist", "gripper_command": "/teleop/gripper"})
            group.start("teleop_expert_node", "teleop_expert", {"noise_m": cfg.expert_noise_m, "seed": cfg.seed})
            group.start("bag_recorder_node", "recorder", {"output_dir": str(out / "bags"), "topics": RECORDED_TOPICS,
                                                          "storage": cfg.storage, "use_sim_time": True})
            driver = Driver(group)
            try:
                # the recorder subscribes to what it discovers: reset once so every topic has a publisher
                driver.reset(episode_seed(cfg.seed, 0), tasks[0])
                driver.spin_until(lambda: "/teleop/twist" in dict(driver.get_topic_names_and_types()), 60,
                                  "the teleop publisher")
                results = []
                with progress_bar(cfg.episodes, "record", unit="episode") as bar:
                    for index in range(cfg.episodes):
                        task = tasks[index % len(tasks)]
                        seed = episode_seed(cfg.seed, index)
                        bag = _start_recording(driver)
                        episode = driver.reset(seed, task).episode
                        status = driver.wait_episode_done(episode, timeout_s=120)
                        done_at = _stamp_ns(status)
                        driver.spin_until(lambda e=episode, t=done_at: _stamp_ns(driver.episodes[e]) > t, 30,
                                          "one step after the episode ended")  # the last command is in the bag
                        driver.trigger("recorder/stop")
                        results.append({"bag": Path(bag).name, "seed": seed, "task": task,
                                        "success": bool(status.success), "steps": int(status.step)})
                        bar.set_postfix(successful=sum(r["success"] for r in results), refresh=False)
                        bar.update()
            finally:
                driver.close()
    finally:
        rclpy.try_shutdown()
    summary = {"config": asdict(cfg), "topics": RECORDED_TOPICS, "episodes": results,
               "expert_success_rate": sum(r["success"] for r in results) / max(1, len(results))}
    out.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def _start_recording(driver: Driver) -> str:
    """recorder/start, retried while the recorder is still discovering topics."""
    last = ""
    for _ in range(100):
        try:
            return driver.trigger("recorder/start")
        except Exception as exc:  # DriverError: "no publisher discovered yet" until discovery completes
            last = str(exc)
            if "discovered" not in last:
                raise
            driver.spin_for(0.1)
    raise RuntimeError(f"the recorder never discovered every topic: {last}")
