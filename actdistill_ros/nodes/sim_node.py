"""sim_node: the simulated tabletop arm behind the same topics a real arm setup has.

Run: ``sim_node --ros-args -p real_time_factor:=1.0`` (``ros2 launch actdistill_ros
sim.launch.py`` starts it with the policy node).

==================================  =========  ==============================================
``camera/image_raw``                pub        sensor_msgs/Image rgb8, one per control step
``instruction``                     pub        std_msgs/String (transient-local), on every reset
``sim/episode``                     pub        actdistill_ros/SimEpisode, one per control step
``/clock``                          pub        rosgraph_msgs/Clock: simulated time
``action``                          sub        actdistill_ros/EndEffectorAction (the policy node)
``servo/delta_twist_cmds``          sub        geometry_msgs/TwistStamped velocities (MoveIt Servo style)
``gripper_command``                 sub        std_msgs/Float64 0 (open) .. 1 (closed), with the twist
``sim/reset``                       srv        actdistill_ros/ResetEpisode (also mid-episode)
==================================  =========  ==============================================

Time: the node owns simulated time and publishes it on ``/clock``; other nodes follow it with
``use_sim_time:=true``. A steady (wall) timer steps the world one control period at a time,
``real_time_factor`` times faster than real time, so closed-loop evaluation can run faster
than the robot would while every node still sees a 10 Hz world. Time runs on before the first
episode and between episodes too (a frozen clock would freeze every timer of the nodes that
follow it: no status, no stale-input watchdog). The newest valid command is held (zero-order
hold) for at most ``command_timeout_s`` of simulated time (whole control periods: 0.5 s at 10 Hz
= the next 5 steps), then the gripper holds still. A command that is non-finite or out of range
is rejected, counted (SimEpisode) and replaced by "hold still"; physics is never fed a bad value.

Episodes: ``initial_seed`` >= 0 starts the first one by itself; with ``wait_for_node`` (e.g.
``policy_node``, a lifecycle node) only once that node reports ``active`` on its ``get_state``
service, so a policy that takes seconds to load does not miss the start of the episode.
``auto_reset`` starts the next episode (seed + 1) after one is done, and ``episodes`` > 0 ends
the node (exit status 0, a summary in the log) once that many are done; ``sim.launch.py``
ends with it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import field, fields
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from pydantic import Field
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image
from std_msgs.msg import Float64, String

from actdistill_ros.core.typed_config import ConfigError, Float, Int, config_dataclass, from_dict
from actdistill_ros.msg import EndEffectorAction, SimEpisode
from actdistill_ros.sim.config import SimConfig
from actdistill_ros.sim.gl_backend import RenderBackendError
from actdistill_ros.sim.tabletop import TabletopSim
from actdistill_ros.srv import ResetEpisode

from .parameters import field_descriptor
from .spin import run_node

NODE_NAME = "sim_node"
SIM_EPOCH_S = 1.0  # simulated time starts here: ROS treats time 0 as "not set"


@config_dataclass
class SimNodeConfig:
    sim: SimConfig = field(default_factory=SimConfig)
    real_time_factor: Float = Field(1.0, gt=0, allow_inf_nan=False,
                                    description="Simulated seconds per wall second.")
    command_timeout_s: Float = Field(0.5, gt=0, allow_inf_nan=False,
                                     description="Hold a command at most this long (simulated time) [s].")
    initial_seed: Int = Field(0, description="First episode at start-up; -1 = wait for sim/reset.")
    initial_task: str = Field("", description="Task of the first episode; '' = drawn from the seed (reach suite).")
    camera_frame_id: str = Field("front_camera", description="frame_id of the published camera images.")
    wait_for_node: str = Field("", description="Start the first episode once this lifecycle node is active "
                                               "('' = at once).")
    auto_reset: bool = Field(False, description="Start the next episode (seed + 1) when one is done.")
    episodes: Int = Field(0, ge=0, description="End the node after this many finished episodes (0 = never).")


def _declare(node: Node) -> SimNodeConfig:
    """Declare every parameter (sim.* nested) with its default, description and range from the
    config fields (nodes/parameters.py), then validate them all."""
    values: dict[str, Any] = {}
    defaults = SimNodeConfig()

    def declare(name: str, cls: type, default: Any) -> Any:
        info = cls.__pydantic_fields__[name.rsplit(".", 1)[-1]]
        return node.declare_parameter(name, default, field_descriptor(info, default)).value

    for f in fields(SimNodeConfig):
        if f.name == "sim":
            values["sim"] = {s.name: declare(f"sim.{s.name}", SimConfig, getattr(defaults.sim, s.name))
                             for s in fields(SimConfig)}
        else:
            values[f.name] = declare(f.name, SimNodeConfig, getattr(defaults, f.name))
    return from_dict(SimNodeConfig, values)


class SimNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.cfg = _declare(self)
        self.sim = TabletopSim(self.cfg.sim)
        self.sim.render()  # fail at start-up, with the install hint, when no GL backend exists
        self._period = self.cfg.sim.control_period_s
        self._tick = 0  # simulated time in whole control periods: summing floats made the hold 5 or 6 steps
        self._hold_ticks = math.ceil(self.cfg.command_timeout_s / self._period - 1e-9)
        self._episode = 0
        self._command = self._hold()
        self._command_tick: float = -math.inf  # tick of the newest valid command
        self._gripper = 0.0
        self._last_rejection = ""
        self.exit_code: int | None = None  # set after the last episode: run_node ends the process
        self._seed = self.cfg.initial_seed
        self._finished: list[bool] = []  # success of every finished episode
        self._reset_due = False

        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._image_pub = self.create_publisher(Image, "camera/image_raw", reliable)
        self._instruction_pub = self.create_publisher(String, "instruction", latched)
        self._episode_pub = self.create_publisher(SimEpisode, "sim/episode", reliable)
        self._clock_pub = self.create_publisher(ClockMsg, "/clock", 10)
        self.create_subscription(EndEffectorAction, "action", self._on_action, 10)
        self.create_subscription(TwistStamped, "servo/delta_twist_cmds", self._on_twist, 10)
        self.create_subscription(Float64, "gripper_command", self._on_gripper, 10)
        self.create_service(ResetEpisode, "sim/reset", self._on_reset)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._wait_timer = self._state_client = self._state_future = None
        if self.cfg.initial_seed >= 0:
            if self.cfg.wait_for_node:
                self._state_client = self.create_client(GetState, f"{self.cfg.wait_for_node}/get_state")
                self._wait_timer = self.create_timer(0.25, self._poll_ready, clock=steady)
                self.get_logger().info(f"waiting for {self._state_client.srv_name} to report 'active' "
                                       "before the first episode")
            else:
                self._reset(self.cfg.initial_seed, self.cfg.initial_task or None)
        wall_period = self._period / self.cfg.real_time_factor
        self._timer = self.create_timer(wall_period, self._on_tick, clock=steady)
        self.get_logger().info(
            f"tabletop sim: {self.cfg.sim.control_rate_hz:g} Hz control, {self.cfg.sim.image_size} px camera, "
            f"{self.cfg.real_time_factor:g}x real time")

    # -- commands ---------------------------------------------------------------------------------
    def _hold(self) -> np.ndarray:
        return np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, getattr(self, "_gripper", 0.0)])

    def _accept(self, command: np.ndarray) -> None:
        reason = self.sim.check_command(command)
        if reason is not None:
            self._reject(reason)
            return
        self._command = command
        self._command_tick = self._tick

    def _reject(self, reason: str) -> None:
        self.sim.count_rejection()
        self._last_rejection = reason
        self._command = self._hold()
        self.get_logger().warn(f"command rejected: {reason}", throttle_duration_sec=2.0)

    def _on_action(self, msg: EndEffectorAction) -> None:
        period = float(msg.control_period)
        if not (math.isfinite(period) and period > 0):
            self._reject(f"EndEffectorAction.control_period must be > 0, got {period}")
            return
        scale = self._period / period  # deltas span the message's period; we step ours
        lin, ang = msg.linear, msg.angular
        command = np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], dtype=np.float64) * scale
        if self._gripper_value_ok(float(msg.gripper)):
            self._accept(np.append(command, float(msg.gripper)))

    def _on_twist(self, msg: TwistStamped) -> None:
        lin, ang = msg.twist.linear, msg.twist.angular
        delta = np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], dtype=np.float64) * self._period
        self._accept(np.append(delta, self._gripper))

    def _on_gripper(self, msg: Float64) -> None:
        if self._gripper_value_ok(float(msg.data)):
            self._gripper = float(msg.data)
            self._command = self._command.copy()
            self._command[6] = self._gripper

    def _gripper_value_ok(self, value: float) -> bool:
        if math.isfinite(value) and 0.0 <= value <= 1.0:
            self._gripper = value
            return True
        self._reject(f"gripper {value} outside [0, 1]")
        return False

    # -- episodes ---------------------------------------------------------------------------------
    def _reset(self, seed: int, task: str | None) -> None:
        info = self.sim.reset(seed, task)
        self._seed = seed
        self._episode += 1
        self._gripper = 0.0
        self._command, self._command_tick = self._hold(), -math.inf
        self._last_rejection = ""
        self._instruction_pub.publish(String(data=info.instruction))
        self._publish_observation()
        self.get_logger().info(f"episode {self._episode}: seed {seed}, {info.task}: '{info.instruction}'")

    def _on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response) -> ResetEpisode.Response:
        try:
            self._reset(int(request.seed), request.task or None)
        except ValueError as exc:
            response.success, response.message = False, str(exc)
            return response
        assert self.sim.episode is not None
        response.success, response.episode = True, self._episode
        response.task, response.instruction = self.sim.episode.task, self.sim.episode.instruction
        return response

    def _poll_ready(self) -> None:
        """Until the node in ``wait_for_node`` is active: ask its lifecycle state."""
        future = self._state_future
        if future is not None and future.done():
            self._state_future = None
            result = future.result()
            if result is not None and result.current_state.id == State.PRIMARY_STATE_ACTIVE:
                self.destroy_timer(self._wait_timer)
                self._wait_timer = None
                self.get_logger().info(f"{self.cfg.wait_for_node} is active: starting the first episode")
                self._reset(self.cfg.initial_seed, self.cfg.initial_task or None)
            return
        if future is None and self._state_client.service_is_ready():
            self._state_future = self._state_client.call_async(GetState.Request())

    # -- stepping ---------------------------------------------------------------------------------
    def _on_tick(self) -> None:
        if self.sim.episode is None:  # between episodes time runs on, as it does for a real arm:
            self._tick += 1  # nodes on sim time keep ticking (watchdogs, status)
            self._publish_clock()
            return
        if self._reset_due:
            self._reset_due = False
            self._reset(self._seed + 1, self.cfg.initial_task or None)
            return
        was_done = self.sim.done
        fresh = self._tick - self._command_tick < self._hold_ticks
        self.sim.step(self._command if fresh else self._hold())
        self._tick += 1
        self._publish_observation()
        if self.sim.done and not was_done:
            self._episode_finished()

    def _episode_finished(self) -> None:
        self._finished.append(self.sim.success)
        self.get_logger().info(f"episode {self._episode}: {'success' if self.sim.success else 'failure'} "
                               f"after {self.sim.steps} steps")
        if self.cfg.episodes and len(self._finished) >= self.cfg.episodes:
            done = self._finished
            self.get_logger().info(f"{len(done)} episode(s) done: {sum(done)} succeeded; ending")
            self.exit_code = 0
        elif self.cfg.auto_reset:
            self._reset_due = True  # on the next tick, after this final observation went out

    def _stamp(self):
        return Time(nanoseconds=int(round((SIM_EPOCH_S + self._tick * self._period) * 1e9))).to_msg()

    def _publish_clock(self) -> None:
        self._clock_pub.publish(ClockMsg(clock=self._stamp()))

    def _publish_observation(self) -> None:
        stamp = self._stamp()
        self._clock_pub.publish(ClockMsg(clock=stamp))
        rgb = self.sim.render()
        image = Image()
        image.header.stamp, image.header.frame_id = stamp, self.cfg.camera_frame_id
        image.height, image.width = rgb.shape[:2]
        image.encoding, image.step = "rgb8", rgb.shape[1] * 3
        image.data = rgb.tobytes()
        self._image_pub.publish(image)
        self._episode_pub.publish(self._episode_msg(stamp))

    def _episode_msg(self, stamp) -> SimEpisode:
        sim, info = self.sim, self.sim.episode
        assert info is not None
        msg = SimEpisode()
        msg.header.stamp, msg.header.frame_id = stamp, "world"
        msg.episode, msg.seed, msg.task, msg.instruction = self._episode, info.seed, info.task, info.instruction
        msg.step, msg.max_steps = sim.steps, self.cfg.sim.max_episode_steps
        msg.done, msg.success = sim.done, sim.success
        msg.distance_to_goal = sim.distance_to_goal()
        msg.rejected_commands, msg.rejected_commands_total = sim.rejected_in_episode, sim.rejected_total
        msg.last_rejection = self._last_rejection
        grip, goal = sim.grip_position(), sim.goal_position()
        msg.grip_position.x, msg.grip_position.y, msg.grip_position.z = (float(v) for v in grip)
        msg.goal_position.x, msg.goal_position.y, msg.goal_position.z = (float(v) for v in goal)
        msg.gripper = sim.gripper_command()
        return msg

    def close(self) -> None:
        self.sim.close()


def main(args: list[str] | None = None) -> int:
    return run_node(SimNode, NODE_NAME, (ConfigError, RenderBackendError, ValueError), SimNode.close, args)

if __name__ == "__main__":
    sys.exit(main())
