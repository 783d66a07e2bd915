"""The policy node: camera + instruction (+ teleop) in, one safe end-effector command per tick out.

Run: ``policy_node --ros-args -p checkpoint:=/path/to/student -p device:=cuda`` or
``python -m actdistill_ros.nodes.policy_node --ros-args --params-file config/policy.yaml``.

Topics (relative names, so namespaces and remaps apply):

==================================  =========  ==============================================
``image``                           sub        sensor_msgs/Image (sensor-data QoS)
``image/compressed``                sub        sensor_msgs/CompressedImage (JPEG/PNG, sensor-data QoS)
``instruction``                     sub        std_msgs/String (reliable; latched and volatile publishers)
``teleop/twist``                    sub        geometry_msgs/TwistStamped, velocities (m/s, rad/s)
``teleop/gripper``                  sub        std_msgs/Float64, gripper closure 0..1
``action``                          pub        actdistill_ros/EndEffectorAction, one per tick
``status``                          pub        actdistill_ros/PolicyStatus, one per tick
``mode_transitions``                pub        actdistill_ros/ModeTransition (transient-local, depth 10)
``servo/delta_twist_cmds``          pub        TwistStamped velocities for MoveIt Servo (optional)
``gripper_command``                 pub        std_msgs/Float64 (optional, with the servo twist)
``set_mode``                        srv        actdistill_ros/SetMode
==================================  =========  ==============================================

Threads: the student runs on a dedicated worker thread, always on the *newest* image only
(a one-slot mailbox: a frame arriving while the model is busy replaces the waiting one,
nothing queues). Inference never runs in an executor callback, so it never blocks the
control timer, which runs on a single-threaded executor with the (short) subscription and
service callbacks; it publishes one command per tick:
the chunk executor's step in AUTONOMY (the blend during the ramp), the human command in
TELEOP and SHADOW. Every command goes through :func:`make_safe`. A stop (source STOP,
zero motion, gripper held) plus a status alarm is published when the driving input is
missing or stale, or inference failed.

Stamps: ``action.header.stamp`` is the header stamp of the *image the command was computed
from* for POLICY/BLEND commands (so image-to-action latency is measurable downstream), the
teleop stamp (or now, if unstamped) for HUMAN and now for STOP. The servo twist is always
stamped now (MoveIt Servo judges staleness by it).

Exit status: 0 on a normal shutdown, 2 when the configuration is invalid (bad parameter,
unknown device, missing or corrupt checkpoint); the error is printed on stderr.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64, String

from actdistill_ros.control.chunking import ChunkExecutor
from actdistill_ros.control.handoff import HandoffConfig, HandoffController, Mode, Source
from actdistill_ros.control.images import ImageDecodeError, compressed_msg_to_rgb, image_msg_to_rgb
from actdistill_ros.control.node_config import (
    PARAMS,
    SPECS,
    ConfigError,
    NodeConfig,
    as_float,
    as_int,
    validate_config,
)
from actdistill_ros.control.safety import make_safe
from actdistill_ros.msg import EndEffectorAction, ModeTransition, PolicyStatus
from actdistill_ros.srv import SetMode

from .spin import run_node

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # rclpy < 6 (Humble and older)
    from rclpy.qos_event import SubscriptionEventCallbacks

NODE_NAME = "policy_node"
_MODE_NAMES = {m: m.name for m in Mode}


def _stamp_is_zero(stamp: Any) -> bool:
    return stamp.sec == 0 and stamp.nanosec == 0


@dataclass
class _Frame:
    image: np.ndarray
    stamp: Any  # builtin_interfaces/Time of the image header
    received: float  # time.monotonic() at reception


class PolicyNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.cfg = self._declare_and_read_parameters()
        self._lock = threading.Lock()  # guards every piece of state below shared across threads
        self._policy_lock = threading.Lock()  # serialises act() and set_budget()
        self._mailbox = threading.Condition(self._lock)
        self._stopping = False

        self.policy = self._load_policy()
        self._default_threshold = self._read_threshold()
        self._apply_budget(self.cfg.max_layers, self.cfg.threshold, at_startup=True)
        if self.cfg.warmup_iterations > 0:
            t0 = time.perf_counter()
            self.policy.warmup(self.cfg.warmup_iterations)
            self.get_logger().info(f"warm-up: {self.cfg.warmup_iterations} passes in {time.perf_counter() - t0:.2f} s")

        # -- state (under self._lock) -------------------------------------------------------
        self._frame: _Frame | None = None  # newest undelivered frame (mailbox of one)
        self._image_received: float | None = None
        self._instruction: str | None = None
        self._instruction_received: float | None = None
        self._twist: np.ndarray | None = None  # 6-D velocities
        self._twist_stamp: Any = None
        self._twist_received: float | None = None
        self._teleop_gripper: float | None = None
        self._gripper_received: float | None = None
        self._dropped_images = 0
        self._inference_error: str | None = None
        self._last_output: Any = None
        self._last_prediction_stamps: tuple[Any, Any] | None = None  # (image stamp, ready time)
        self._chunk_pending: tuple[np.ndarray, Any] | None = None
        self._executor = ChunkExecutor(self.cfg.temporal_ensemble, self.cfg.ensemble_k)
        self._handoff = HandoffController(HandoffConfig(self.cfg.deadband, self.cfg.ramp_s), self.cfg.initial_mode)
        self._last_gripper = self.cfg.limits.gripper_min
        self._ticks: deque[float] = deque()  # node-clock times of the recent ticks (rate measurement)
        self._rate_window_s = max(1.0, 3.0 * self.cfg.period_s)

        # -- ROS interfaces ------------------------------------------------------------------
        sensor_qos = _qos(depth=1, reliable=False, latched=False)
        latched_qos = _qos(depth=1, reliable=True, latched=True)
        volatile_qos = _qos(depth=1, reliable=True, latched=False)
        transitions_qos = _qos(depth=10, reliable=True, latched=True)
        self.create_subscription(Image, "image", self._on_image, sensor_qos)
        self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, sensor_qos)
        # Two subscriptions on `instruction`: a transient-local one receives the latched message of a
        # transient-local publisher that started earlier, but DDS does not match it with a volatile
        # publisher (e.g. plain `ros2 topic pub`); the volatile one covers those. A transient-local
        # publisher reaches both: the duplicate is harmless (same text, same time).
        # The latched subscription's expected DURABILITY mismatch with volatile publishers is
        # logged at debug level instead of rclpy's default warning.
        latched_events = SubscriptionEventCallbacks(incompatible_qos=self._on_latched_incompatible)
        self.create_subscription(
            String,
            "instruction",
            self._on_instruction,
            latched_qos,
            event_callbacks=latched_events,
        )
        self.create_subscription(String, "instruction", self._on_instruction, volatile_qos)
        self.create_subscription(TwistStamped, "teleop/twist", self._on_twist, 10)
        self.create_subscription(Float64, "teleop/gripper", self._on_gripper, 10)
        self._action_pub = self.create_publisher(EndEffectorAction, "action", 10)
        self._status_pub = self.create_publisher(PolicyStatus, "status", 10)
        self._transition_pub = self.create_publisher(ModeTransition, "mode_transitions", transitions_qos)
        self._servo_pub = self._gripper_pub = None
        if self.cfg.publish_servo_twist:
            self._servo_pub = self.create_publisher(TwistStamped, "servo/delta_twist_cmds", 10)
            self._gripper_pub = self.create_publisher(Float64, "gripper_command", 10)
        self.create_service(SetMode, "set_mode", self._on_set_mode)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._worker = threading.Thread(target=self._inference_loop, name="policy_inference", daemon=True)
        self._worker.start()
        self._timer = self.create_timer(self.cfg.period_s, self._on_tick)
        p = self.policy
        self.get_logger().info(
            f"ready: device {p.device}, image {p.image_size}, chunk {p.chunk_size}, {p.layers_total} layers, "
            f"{self.cfg.control_rate_hz:g} Hz, mode {self._handoff.mode.name}"
        )

    # == start-up ===========================================================================
    def _declare_and_read_parameters(self) -> NodeConfig:
        values: dict[str, Any] = {}
        for spec in PARAMS:
            numeric = isinstance(spec.default, int | float) and not isinstance(spec.default, bool)
            descriptor = ParameterDescriptor(
                description=spec.description,
                read_only=not spec.runtime,
                # numbers: accept 10 as well as 10.0 from -p / YAML; validate_config checks types
                dynamic_typing=numeric,
            )
            try:
                values[spec.name] = self.declare_parameter(spec.name, spec.default, descriptor).value
            except ParameterException as exc:  # e.g. a string given for a bool parameter
                raise ConfigError(f"parameter '{spec.name}': {exc}") from exc
        return validate_config(values)

    def _load_policy(self):
        # imported here so that `--help`-style failures and config errors do not pay for torch
        from actdistill_ros.core.checkpoint import CheckpointError
        from actdistill_ros.core.policies import load_policy

        where = self.cfg.checkpoint or "<shipped default student>"
        try:
            policy = load_policy(self.cfg.checkpoint or None, device=self.cfg.device, dtype=self.cfg.dtype)
        except CheckpointError as exc:
            raise ConfigError(f"parameter 'checkpoint': cannot load {where}: {exc}") from exc
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load the policy ({where}) on device {self.cfg.device!r}: {exc}") from exc
        return policy

    def _read_threshold(self) -> float | None:
        student = getattr(self.policy, "student", None)
        value = getattr(student, "threshold", None)
        return float(value) if isinstance(value, int | float) else None

    def _apply_budget(self, max_layers: int, threshold: float, at_startup: bool = False) -> None:
        """``max_layers`` 0 = no cap; ``threshold`` 0 = the checkpoint's. ValueError/ConfigError if bad."""
        cap = None if max_layers == 0 else int(max_layers)
        if threshold == 0.0:
            if self._default_threshold is None and not at_startup:
                raise ValueError("threshold 0 (checkpoint default) is unknown for this policy; set a value in (0, 1)")
            thr = self._default_threshold
        else:
            thr = float(threshold)
        try:
            with self._policy_lock:
                self.policy.set_budget(max_layers=cap, threshold=thr)
        except ValueError as exc:
            if at_startup:
                raise ConfigError(f"parameters 'max_layers'/'threshold': {exc}") from exc
            raise

    # == parameters at run time ================================================================
    def _on_set_parameters(self, params: list) -> SetParametersResult:
        max_layers = self.get_parameter("max_layers").value
        threshold = self.get_parameter("threshold").value
        for p in params:
            if p.name == "max_layers":
                max_layers = p.value
            elif p.name == "threshold":
                threshold = p.value
            elif p.name in SPECS and not SPECS[p.name].runtime:
                return SetParametersResult(successful=False, reason=f"parameter '{p.name}' is read-only at run time")
        errors: list[str] = []
        ml = as_int("max_layers", max_layers, errors)
        thr = as_float("threshold", threshold, errors)
        if not errors and ml < 0:
            errors.append(f"parameter 'max_layers' must be >= 0 (0 = no cap), got {max_layers!r}")
        if not errors and not (thr == 0.0 or 0.0 < thr < 1.0):
            errors.append(f"parameter 'threshold' must be in (0, 1) or 0 (checkpoint default), got {threshold!r}")
        if not errors:
            try:
                self._apply_budget(ml, thr)
            except ValueError as exc:
                errors.append(str(exc))
        if errors:
            reason = "; ".join(errors)
            self.get_logger().warning(f"rejected parameter change: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        self.get_logger().info(f"compute budget: max_layers={ml or 'no cap'}, threshold={thr or 'checkpoint'}")
        return SetParametersResult(successful=True)

    # == inputs =================================================================================
    def _drop_image(self, exc: Exception) -> None:
        with self._lock:
            self._dropped_images += 1
            count = self._dropped_images
        self.get_logger().warning(f"dropped image ({count} so far): {exc}", throttle_duration_sec=1.0)

    def _deliver(self, image: np.ndarray, stamp: Any) -> None:
        now = time.monotonic()
        with self._mailbox:
            self._frame = _Frame(image, stamp, now)  # replaces an undelivered older frame
            self._image_received = now
            self._mailbox.notify()

    def _on_image(self, msg: Image) -> None:
        try:
            image = image_msg_to_rgb(msg)
        except ImageDecodeError as exc:
            self._drop_image(exc)
            return
        self._deliver(image, msg.header.stamp)

    def _on_compressed(self, msg: CompressedImage) -> None:
        try:
            image = compressed_msg_to_rgb(msg)
        except ImageDecodeError as exc:
            self._drop_image(exc)
            return
        self._deliver(image, msg.header.stamp)

    def _on_instruction(self, msg: String) -> None:
        text = msg.data.strip()
        with self._lock:
            changed = text != (self._instruction or "")
            self._instruction = text or None  # an empty string clears the instruction
            self._instruction_received = time.monotonic()
        if changed:
            self.get_logger().info(f"instruction: {text!r}" if text else "instruction cleared")

    def _on_latched_incompatible(self, event: Any) -> None:
        self.get_logger().debug(
            f"volatile instruction publisher (served by the volatile subscription): {event.last_policy_kind}"
        )

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        twist = np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z])
        now = time.monotonic()
        magnitude = float(np.linalg.norm(twist)) if np.isfinite(twist).all() else math.inf
        with self._lock:
            self._twist = twist
            self._twist_stamp = msg.header.stamp
            self._twist_received = now
            transition = self._handoff.human_input(magnitude, now)
            if transition is not None:
                self._executor.reset()
        if transition is not None:
            self._publish_transition(transition)

    def _on_gripper(self, msg: Float64) -> None:
        with self._lock:
            self._teleop_gripper = float(msg.data)
            self._gripper_received = time.monotonic()

    def _on_set_mode(self, request: SetMode.Request, response: SetMode.Response) -> SetMode.Response:
        reason = request.reason.strip() or "service request"
        now = time.monotonic()
        with self._lock:
            previous = self._handoff.mode
            response.previous_mode = int(previous)
            try:
                target = Mode.parse(int(request.mode))
            except ValueError as exc:
                response.success = False
                response.message = str(exc)
                return response
            transition = self._handoff.request(target, reason, now)
            warnings = []
            if target == Mode.AUTONOMY:
                if self._instruction is None:
                    warnings.append("no instruction yet")
                if self._image_received is None:
                    warnings.append("no image yet")
        response.success = True
        if transition is None:
            response.message = f"already in {target.name}"
        else:
            response.message = f"{previous.name} -> {target.name}"
            if warnings:
                response.message += " (will stop until: " + ", ".join(warnings) + ")"
            self._publish_transition(transition)
        return response

    def _publish_transition(self, transition) -> None:
        msg = ModeTransition()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.from_mode = int(transition.from_mode)
        msg.to_mode = int(transition.to_mode)
        msg.reason = transition.reason
        self._transition_pub.publish(msg)
        self.get_logger().info(f"mode {transition.from_mode.name} -> {transition.to_mode.name}: {transition.reason}")

    # == inference worker =========================================================================
    def _inference_loop(self) -> None:
        while True:
            with self._mailbox:
                while self._frame is None and not self._stopping:
                    self._mailbox.wait(timeout=0.5)
                if self._stopping:
                    return
                frame, self._frame = self._frame, None
                instruction = self._instruction
            if instruction is None:
                continue
            try:
                with self._policy_lock:
                    out = self.policy.act(frame.image, instruction)
            except Exception as exc:  # noqa: BLE001 -- any failure must stop the robot, not the node
                message = f"inference failed: {type(exc).__name__}: {exc}"
                with self._lock:
                    self._inference_error = message
                    self._executor.reset()
                self.get_logger().error(message, throttle_duration_sec=2.0)
                continue
            ready = self.get_clock().now().to_msg()
            with self._lock:
                self._inference_error = None
                self._last_output = out
                self._last_prediction_stamps = (frame.stamp, ready)
                self._chunk_pending = (out.actions, frame.stamp)

    # == control loop =============================================================================
    def _age(self, received: float | None, now: float) -> float:
        return -1.0 if received is None else now - received

    def _policy_unavailable(self, now: float) -> str | None:
        cfg = self.cfg
        if self._instruction is None:
            return "no instruction"
        age = now - self._instruction_received
        if age > cfg.instruction_timeout_s:
            return f"instruction stale ({age:.2f} s > {cfg.instruction_timeout_s:.2f} s)"
        if self._image_received is None:
            return "no image received"
        age = now - self._image_received
        if age > cfg.image_timeout_s:
            return f"image stale ({age:.2f} s > {cfg.image_timeout_s:.2f} s)"
        if self._inference_error is not None:
            return self._inference_error
        return None

    def _human_command(self, now: float) -> np.ndarray | None:
        cfg = self.cfg
        twist_fresh = self._twist_received is not None and now - self._twist_received <= cfg.teleop_timeout_s
        grip_fresh = self._gripper_received is not None and now - self._gripper_received <= cfg.teleop_timeout_s
        if not (twist_fresh or grip_fresh):
            return None
        cmd = np.zeros(7, dtype=np.float64)
        if twist_fresh:
            cmd[:6] = self._twist * cfg.period_s
        cmd[6] = self._teleop_gripper if self._teleop_gripper is not None else self._last_gripper
        return cmd

    def _on_tick(self) -> None:
        cfg = self.cfg
        now = time.monotonic()
        clock_now = self.get_clock().now()
        ros_now = clock_now.to_msg()
        tick_s = clock_now.nanoseconds * 1e-9
        with self._lock:
            # measured rate: ticks over the last second or so (robust to one late tick and the
            # catch-up after it, unlike a filtered 1/dt), on the node clock, so that it reads
            # control steps per simulated second under use_sim_time. Staleness stays on the
            # monotonic clock: a simulator that stops must stop the arm too.
            self._ticks.append(tick_s)
            while tick_s - self._ticks[0] > self._rate_window_s:
                self._ticks.popleft()
            if self._chunk_pending is not None:
                actions, stamp = self._chunk_pending
                self._chunk_pending = None
                self._executor.add(actions, stamp=stamp)
            step = self._executor.next()  # advances every tick, whatever the mode
            unavailable = self._policy_unavailable(now)
            if unavailable is None and step is None:
                unavailable = "no prediction yet" if self._last_output is None else "action chunk used up"
            policy_cmd = None if unavailable is not None else step.action
            human_cmd = self._human_command(now)
            if human_cmd is None:
                human_reason = (
                    "no teleop input"
                    if self._twist_received is None and self._gripper_received is None
                    else f"teleop stale (> {cfg.teleop_timeout_s:.2f} s)"
                )
            else:
                human_reason = ""
            decision = self._handoff.step(
                now,
                human_cmd,
                policy_cmd,
                hold_gripper=self._last_gripper,
                policy_unavailable_reason=unavailable or "",
                human_unavailable_reason=human_reason,
            )
            safe = make_safe(decision.command, cfg.limits, hold_gripper=self._last_gripper)
            source = decision.source if not safe.non_finite else Source.STOP
            alarm_reason = decision.stop_reason if source == Source.STOP else ""
            if safe.non_finite:
                alarm_reason = "non-finite command replaced by stop"
            self._last_gripper = float(safe.command[6])
            out = self._last_output
            prediction_stamps = self._last_prediction_stamps
            ages = (
                self._age(self._image_received, now),
                self._age(self._instruction_received, now),
                self._age(max(filter(None, (self._twist_received, self._gripper_received)), default=None), now),
            )
            dropped = self._dropped_images
            twist_fresh = self._twist_received is not None and now - self._twist_received <= cfg.teleop_timeout_s
            twist_stamp = self._twist_stamp if twist_fresh else None
            ticks = self._ticks
            rate = (len(ticks) - 1) / (ticks[-1] - ticks[0]) if len(ticks) > 1 and ticks[-1] > ticks[0] else 0.0
            mode = self._handoff.mode

        action = EndEffectorAction()
        if source in (Source.POLICY, Source.BLEND) and step is not None and step.stamp is not None:
            action.header.stamp = step.stamp
        elif source == Source.HUMAN and twist_stamp is not None and not _stamp_is_zero(twist_stamp):
            action.header.stamp = twist_stamp
        else:
            action.header.stamp = ros_now
        action.header.frame_id = cfg.action_frame_id
        c = safe.command
        action.linear.x, action.linear.y, action.linear.z = float(c[0]), float(c[1]), float(c[2])
        action.angular.x, action.angular.y, action.angular.z = float(c[3]), float(c[4]), float(c[5])
        action.gripper = float(c[6])
        action.control_period = float(cfg.period_s)
        action.source = int(source)
        if source in (Source.POLICY, Source.BLEND) and step is not None and len(step.remaining):
            rows = [make_safe(r, cfg.limits, hold_gripper=c[6]).command for r in step.remaining]
            action.chunk_length = len(rows)
            action.chunk = np.asarray(rows, dtype=np.float32).reshape(-1).tolist()
        self._action_pub.publish(action)

        if self._servo_pub is not None:
            twist = TwistStamped()
            twist.header.stamp = ros_now
            twist.header.frame_id = cfg.servo_frame_id
            v = c[:6] / cfg.period_s * cfg.servo_scale
            twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = map(float, v[:3])
            twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z = map(float, v[3:])
            self._servo_pub.publish(twist)
            self._gripper_pub.publish(Float64(data=float(c[6])))

        status = PolicyStatus()
        status.header.stamp = ros_now
        status.mode = int(mode)
        status.mode_name = _MODE_NAMES[mode]
        status.alarm = source == Source.STOP
        status.alarm_reason = alarm_reason
        if out is not None:
            status.inference_latency_ms = float(out.latency_ms)
            status.layers_executed = int(out.layers_executed)
            status.layers_total = int(out.layers_total)
            status.flops_ratio = float(out.flops_ratio)
            status.prediction_image_stamp, status.prediction_ready_stamp = prediction_stamps
        else:
            status.layers_total = int(self.policy.layers_total)
        status.image_age_s, status.instruction_age_s, status.teleop_age_s = (float(a) for a in ages)
        status.control_rate_hz = float(rate)
        status.dropped_images = int(dropped)
        agreement = decision.agreement
        status.shadow_error = float(agreement.error) if agreement is not None else math.nan
        status.shadow_cosine = float(agreement.cosine) if agreement is not None else math.nan
        self._status_pub.publish(status)

    # == shutdown ====================================================================================
    def stop(self) -> None:
        with self._mailbox:
            self._stopping = True
            self._mailbox.notify_all()
        self._worker.join(timeout=5.0)


def _qos(depth: int, reliable: bool, latched: bool) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, NODE_NAME, (ConfigError,), PolicyNode.stop, args)


if __name__ == "__main__":
    sys.exit(main())
