"""The policy node: camera + instruction (+ teleop) in, one safe end-effector command per tick out.

Run: ``policy_node --ros-args -p checkpoint:=/path/to/student -p device:=cuda`` or
``python -m actdistill_ros.nodes.policy_node --ros-args --params-file config/policy.yaml``.

A managed (lifecycle) node, the ROS 2 convention for nodes that drive hardware:

==============  ==========================================================================
configure       load the checkpoint, apply the compute budget, warm up; start the inference
                thread and the control loop (``status`` is published from here on)
activate        command the arm: ``action`` (and the servo topics) are published every tick
deactivate      one zero command (source STOP, gripper held), then silence on ``action``
cleanup         release the model (back to unconfigured)
shutdown        from any state: a zero command first when active, then release the model
==============  ==========================================================================

With ``autostart`` (default true) the node configures and activates itself at start-up, so
a plain ``policy_node`` (and the launch files) serve at once; ``autostart:=false`` leaves it
unconfigured for ``ros2 lifecycle set /policy_node configure`` / ``activate``. Ctrl-C (SIGINT) or
SIGTERM shut it down through the same transitions: the last message on ``action`` is a stop.

Topics (relative names, so namespaces and remaps apply):

==================================  =========  ==============================================
``image``                           sub        sensor_msgs/Image (sensor-data QoS)
``image/compressed``                sub        sensor_msgs/CompressedImage (JPEG/PNG, sensor-data QoS)
``instruction``                     sub        std_msgs/String (reliable; latched and volatile publishers)
``teleop/twist``                    sub        geometry_msgs/TwistStamped, velocities (m/s, rad/s)
``teleop/gripper``                  sub        std_msgs/Float64, gripper closure 0..1
``ee_pose``                         sub        geometry_msgs/PoseStamped (only with ``workspace.enabled``)
``action``                          pub        actdistill_ros/EndEffectorAction, one per tick (active)
``status``                          pub        actdistill_ros/PolicyStatus, one per tick (configured)
``mode_transitions``                pub        actdistill_ros/ModeTransition (transient-local, depth 10)
``/diagnostics``                    pub        diagnostic_msgs/DiagnosticArray (``diagnostics_rate_hz``)
``servo/delta_twist_cmds``          pub        TwistStamped velocities for MoveIt Servo (optional)
``gripper_command``                 pub        std_msgs/Float64 (optional, with the servo twist)
``set_mode``                        srv        actdistill_ros/SetMode
==================================  =========  ==============================================

Threads: the student runs on a dedicated worker thread, always on the *newest* image only
(a one-slot mailbox: a frame arriving while the model is busy replaces the waiting one,
nothing queues). The subscription callback only swaps the message into the mailbox; the worker
decodes the frames it uses (an HD frame is megabytes), so frames it skips cost nothing more.
Inference never runs in an executor callback, so it never blocks the control timer, which runs
on a single-threaded executor with the (short) subscription, service and parameter callbacks.
A new ``max_layers``/``threshold`` is checked on the executor thread without touching the model
and applied by the worker between two forward passes, so setting it never waits for an
inference. One command per tick: the chunk executor's step in AUTONOMY (the blend during the
ramp), the human command in TELEOP and SHADOW.

Timing: ``command_timing: timer`` sends one command per control tick; ``prediction`` also sends one
the moment a prediction is ready (the worker hands the executor a task) and restarts the timer, so
with the camera at the control rate commands are forward + transport old, not up to a period more.
``inference_priority`` (> 0) puts the worker under real-time scheduling (``SCHED_FIFO``,
:mod:`.thread_priority`): busy neighbours on the machine no longer delay a pass. ``executor: events``
runs the callbacks on rclpy's EventsExecutor (:func:`.spin.make_executor`): far less Python per
callback, so the executor thread takes the GIL from a forward pass less often.
``latency_budget_ms`` (> 0): the worker lowers/raises the layer cap after each pass by the rule of
:mod:`actdistill_ros.control.latency_budget` (below the operator's ``max_layers``; one layer's share
of a full pass, for its latency model, from the checkpoint's FLOP split); ``status`` reports the
cap, the misses and the p95.

Each tick is decided by :func:`actdistill_ros.control.tick.control_tick` (ROS-free, tested without
DDS): the node gathers the newest inputs under its lock, calls it, and publishes and logs what it
returns. The teleop override is decided there too (:func:`~actdistill_ros.control.tick.twist_override`).

Safety (:mod:`actdistill_ros.control.safety`, :mod:`actdistill_ros.control.monitoring`): input
ages come from header stamps (at least the time since reception; a stamp further in the future
than ``stamp_skew_tolerance_s`` is not trusted); every command goes through the command filter
(finite, per-step norms, gripper range, change from the previous tick, optional workspace box
against ``ee_pose``), each event counted in ``status``. A stop (source STOP, zero motion, gripper
held) plus a status alarm is published when the driving input is missing or stale, inference
failed, or (with the workspace on) the pose is missing or stale; every stop and its reason is
logged (throttled). In AUTONOMY a teleop twist above ``deadband`` or a gripper command changing
the gripper by more than ``gripper_deadband`` hands control to the human in the same tick.

Stamps: ``action.header.stamp`` is the header stamp of the *image the command was computed
from* for POLICY/BLEND commands (so image-to-action latency is measurable downstream), the
teleop stamp (or now, if unstamped) for HUMAN and now for STOP. The servo twist is always
stamped now (MoveIt Servo judges staleness by it).

Exit status: 0 on a normal shutdown, 2 when the configuration is invalid (bad parameter,
unknown device, missing or corrupt checkpoint; with ``autostart`` also a failed configure);
the error is printed on stderr.
"""

from __future__ import annotations

import gc
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64, String

from actdistill_ros.control.handoff import HandoffConfig, HandoffController, Mode, Source
from actdistill_ros.control.latency_budget import LatencyBudget, layer_cap
from actdistill_ros.control.monitoring import diagnostic_report, instruction_problem
from actdistill_ros.control.node_config import (
    PARAMS,
    SPECS,
    ConfigError,
    NodeConfig,
    ParamSpec,
    resolve_budget,
    validate_config,
)
from actdistill_ros.control.tick import (
    ControlState,
    Received,
    StatusAges,
    TickInputs,
    TickOutput,
    control_tick,
    gripper_override,
    twist_override,
)
from actdistill_ros.core.data.images import ImageDecodeError, compressed_msg_to_rgb, image_msg_to_rgb
from actdistill_ros.msg import EndEffectorAction, ModeTransition, PolicyStatus
from actdistill_ros.srv import SetMode

from .parameters import descriptor
from .spin import events_executor_available, run_node
from .thread_priority import INFERENCE_THREAD_NAME, name_thread, set_fifo_priority

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # rclpy < 6 (Humble and older)
    from rclpy.qos_event import SubscriptionEventCallbacks

NODE_NAME = "policy_node"
_MODE_NAMES = {m: m.name for m in Mode}
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def _stamp_s(stamp: Any) -> float:
    """A builtin_interfaces/Time in seconds (0.0 = unstamped)."""
    return stamp.sec + stamp.nanosec * 1e-9


def _stamp_is_zero(stamp: Any) -> bool:
    return stamp.sec == 0 and stamp.nanosec == 0


_GIL_HANDOFF_S = 1e-4  # the executor thread's pause after handing a frame to the worker (_on_image)


@dataclass
class _Frame:
    msg: Any  # sensor_msgs/Image or CompressedImage, not decoded yet
    received: float  # time.monotonic() at reception
    received_stamp: Any  # the node's ROS time at reception (builtin_interfaces/Time), for status


class PolicyNode(LifecycleNode):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.cfg = self._declare_and_read_parameters()
        if self.cfg.executor == "events" and not events_executor_available():
            raise ConfigError("parameter 'executor' events: this rclpy has no rclpy.experimental.EventsExecutor "
                              "(ROS 2 Kilted or newer); use single_threaded")
        self._lock = threading.Lock()  # guards every piece of state below shared across threads
        self._mailbox = threading.Condition(self._lock)
        self.lifecycle_state = "unconfigured"  # lifecycle state (the executor thread changes it)
        self.configure_error = ""  # why the last configure failed
        self.policy = None
        self._policy_info: tuple[int, float | None, bool] | None = None  # layers, default threshold, routed
        self._pending_budget: tuple[int | None, float | None] | None = None  # for the worker to apply
        self._budget: tuple[int | None, float | None] = (None, None)  # the operator's (max_layers, threshold)
        self._deadline: LatencyBudget | None = None  # latency_budget_ms > 0: the cap it keeps (worker only)
        self._deadline_report: tuple[int, int, float] = (0, 0, math.nan)  # (cap, misses, p95) for status
        self._last_prediction_tick_ns: int | None = None  # node clock of the last prediction-driven command
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._timer = None
        self._handoff = HandoffController(
            HandoffConfig(self.cfg.deadband, self.cfg.ramp_s, self.cfg.gripper_deadband), self.cfg.initial_mode
        )  # the mode survives reconfiguration
        self._reset_inputs()
        self._reset_state()

        # -- ROS interfaces (all states; `action` and the servo topics only publish when active) --
        sensor_qos = _qos(depth=1, reliable=False, latched=False)
        latched_qos = _qos(depth=1, reliable=True, latched=True)
        volatile_qos = _qos(depth=1, reliable=True, latched=False)
        transitions_qos = _qos(depth=10, reliable=True, latched=True)
        self.create_subscription(Image, "image", self._on_image, sensor_qos)
        self.create_subscription(CompressedImage, "image/compressed", self._on_image, sensor_qos)
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
        if self.cfg.workspace is not None:
            self.create_subscription(PoseStamped, "ee_pose", self._on_pose, sensor_qos)
        self._action_pub = self.create_lifecycle_publisher(EndEffectorAction, "action", 10)
        self._status_pub = self.create_publisher(PolicyStatus, "status", 10)
        self._transition_pub = self.create_publisher(ModeTransition, "mode_transitions", transitions_qos)
        self._servo_pub = self._gripper_pub = None
        if self.cfg.publish_servo_twist:
            self._servo_pub = self.create_lifecycle_publisher(TwistStamped, "servo/delta_twist_cmds", 10)
            self._gripper_pub = self.create_lifecycle_publisher(Float64, "gripper_command", 10)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(SetMode, "set_mode", self._on_set_mode)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.cfg.diagnostics_rate_hz > 0:
            # wall-clock timer: diagnostics keep coming when simulated time stops
            self.create_timer(1.0 / self.cfg.diagnostics_rate_hz, self._publish_diagnostics,
                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info("unconfigured" + ("" if self.cfg.autostart else
                                                 ": waiting for `ros2 lifecycle set <node> configure`"))

    def _reset_inputs(self) -> None:
        """The newest inputs (under self._lock once the worker runs); kept over reconfiguration."""
        self._frame: _Frame | None = None  # newest undelivered frame (mailbox of one)
        self._image: Received | None = None
        self._instruction: str | None = None
        self._instruction_error: str | None = None  # why the newest instruction was refused
        self._instruction_text = ""  # the newest one received, refused or not
        self._instruction_in: Received | None = None
        self._twist: np.ndarray | None = None  # 6-D velocities
        self._twist_stamp: Any = None  # its header stamp (None: unstamped)
        self._twist_in: Received | None = None
        self._teleop_gripper: float | None = None
        self._gripper_in: Received | None = None
        self._pose: np.ndarray | None = None
        self._pose_in: Received | None = None
        self._pose_frame_error = ""
        self._dropped_images = 0
        self._image_error: str | None = None  # why the newest image given to the model did not decode

    def _reset_state(self) -> None:
        """Per-configuration state: predictions, chunks, the command filter and its counters."""
        cfg = self.cfg
        self._frame = None
        self._inference_error: str | None = None
        self._last_output: Any = None
        self._last_prediction_stamps: tuple[Any, Any, Any] | None = None  # (image stamp, received, ready)
        self._prediction_ready: float | None = None  # monotonic
        self._chunk_pending: tuple[np.ndarray, Any] | None = None
        self._control = ControlState.initial(cfg, self._handoff)  # what control_tick carries between ticks
        self._last_tick: TickOutput | None = None  # of the last active tick, for diagnostics

    # == parameters ===========================================================================
    def _declare_and_read_parameters(self) -> NodeConfig:
        values: dict[str, Any] = {}
        for spec in PARAMS:
            try:
                values[spec.name] = self.declare_parameter(spec.name, spec.default, _descriptor(spec)).value
            except ParameterException as exc:
                # e.g. a value outside the announced range: declare it without the range so that
                # validate_config() can report every problem in its own words
                try:
                    values[spec.name] = self.declare_parameter(
                        spec.name, spec.default, _descriptor(spec, with_range=False)).value
                except ParameterException as exc2:  # e.g. a string given for a bool parameter
                    raise ConfigError(f"parameter '{spec.name}': {exc2}") from exc
        return validate_config(values)

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Runs on the executor thread: checks the new budget against the loaded policy's
        metadata and hands it to the inference thread; it never waits for the model."""
        max_layers = self.get_parameter("max_layers").value
        threshold = self.get_parameter("threshold").value
        for p in params:
            if p.name == "max_layers":
                max_layers = p.value
            elif p.name == "threshold":
                threshold = p.value
            elif p.name in SPECS and not SPECS[p.name].runtime:
                return SetParametersResult(successful=False, reason=f"parameter '{p.name}' is read-only at run time")
        info = self._policy_info
        try:
            if info is None:  # not configured: checked against the model at configure
                budget = resolve_budget(max_layers, threshold, 1 << 30, None, routed=True)
            else:
                budget = resolve_budget(max_layers, threshold, *info)
        except ValueError as exc:
            self.get_logger().warning(f"rejected parameter change: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        with self._mailbox:
            self._pending_budget = budget
            self._mailbox.notify()
        self.get_logger().info(f"compute budget: max_layers={max_layers or 'no cap'}, "
                               f"threshold={threshold or 'checkpoint'} (applied before the next inference)")
        return SetParametersResult(successful=True)

    # == lifecycle =============================================================================
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except ConfigError as exc:
            self.configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return FAILURE
        except Exception as exc:  # noqa: BLE001 -- a failed configure must leave the node usable
            self.configure_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"configure failed: {self.configure_error}")
            self._release()
            return FAILURE
        return SUCCESS

    def _configure(self) -> None:
        cfg = self.cfg
        self.configure_error = ""
        self.policy = self._load_policy()
        student = getattr(self.policy, "student", None)
        default_threshold = getattr(student, "threshold", None)
        default_threshold = float(default_threshold) if isinstance(default_threshold, int | float) else None
        self._policy_info = (int(self.policy.layers_total), default_threshold, student is not None)
        try:
            budget = resolve_budget(self.get_parameter("max_layers").value, self.get_parameter("threshold").value,
                                    *self._policy_info)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.policy.set_budget(max_layers=budget[0], threshold=budget[1])
        self._budget = budget
        self._deadline = None
        if cfg.latency_budget_ms > 0:
            if student is None:
                raise ConfigError("parameter 'latency_budget_ms': a teacher checkpoint has no layers to skip "
                                  "(use 0 with a teacher)")
            self._deadline = LatencyBudget(cfg.latency_budget_ms, int(self.policy.layers_total),
                                           layer_share=self._layer_share())
        self._deadline_report = (0, 0, math.nan)
        if cfg.warmup_iterations > 0:
            t0 = time.perf_counter()
            self.policy.warmup(cfg.warmup_iterations)
            self.get_logger().info(f"warm-up: {cfg.warmup_iterations} passes in {time.perf_counter() - t0:.2f} s")
        with self._lock:
            self._reset_state()
            self._pending_budget = None
            self._stopping = False
        self._worker = threading.Thread(target=self._inference_loop, name="policy_inference", daemon=True)
        self._worker.start()
        name_thread(self._worker.native_id, INFERENCE_THREAD_NAME)
        if cfg.inference_priority:  # ConfigError when not permitted: on_configure then stops the worker
            set_fifo_priority(self._worker.native_id, cfg.inference_priority)
            self.get_logger().info(f"inference thread: SCHED_FIFO priority {cfg.inference_priority}")
        self._timer = self.create_timer(cfg.period_s, self._on_timer)
        self.lifecycle_state = "inactive"
        p = self.policy
        self.get_logger().info(
            f"ready: device {p.device}, image {p.image_size}, chunk {p.chunk_size}, {p.layers_total} layers, "
            f"{cfg.control_rate_hz:g} Hz, mode {self._handoff.mode.name}"
        )

    def _load_policy(self):
        # imported here so that configuration errors do not pay for torch
        from actdistill_ros.core.model.checkpoint import CheckpointError
        from actdistill_ros.core.policy import load_policy

        where = self.cfg.checkpoint or "<shipped default student>"
        try:
            return load_policy(self.cfg.checkpoint or None, device=self.cfg.device, dtype=self.cfg.dtype,
                               execution=self.cfg.execution)
        except CheckpointError as exc:
            raise ConfigError(f"parameter 'checkpoint': cannot load {where}: {exc}") from exc
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load the policy ({where}) on device {self.cfg.device!r}: {exc}") from exc

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        now = time.monotonic()
        with self._lock:
            self._control.reactivate(now)
            self._frame = None
        self.lifecycle_state = "active"
        result = super().on_activate(state)  # enables the lifecycle publishers
        self.get_logger().info(f"active: commanding the arm (mode {self._handoff.mode.name})")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._publish_final_stop("deactivated")
        self.lifecycle_state = "inactive"
        with self._lock:
            self._control.executor.reset()
            self._frame = None
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: model released")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.lifecycle_state == "active":
            self._publish_final_stop("shutting down")
        self._release()
        self.lifecycle_state = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error("lifecycle transition raised: releasing the model")
        self._release()
        return SUCCESS

    def _release(self) -> None:
        """Stop the worker and the control loop, drop the model (back to unconfigured)."""
        with self._mailbox:
            self._stopping = True
            self._mailbox.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        device = getattr(self.policy, "device", None)
        self.policy = None
        self._policy_info = None
        self.lifecycle_state = "unconfigured"
        gc.collect()
        if device is not None and getattr(device, "type", "") == "cuda":
            import torch

            torch.cuda.empty_cache()

    def shutdown(self) -> None:
        """End of the process (Ctrl-C, SIGTERM): the lifecycle shutdown transition, whose zero
        command goes out while the context is still valid."""
        if self.lifecycle_state in ("unconfigured", "inactive", "active") and self.context.ok():
            try:
                self.trigger_shutdown()
                return
            except Exception as exc:  # noqa: BLE001 -- e.g. Ctrl-C left a transition half done
                self.get_logger().warning(f"shutdown transition not possible ({exc}): releasing the model")
        self._release()

    def _publish_final_stop(self, why: str) -> None:
        """One zero command (STOP, gripper held) on `action` (and the servo topics)."""
        now = self.get_clock().now().to_msg()
        action = EndEffectorAction()
        action.header.stamp = now
        action.header.frame_id = self.cfg.action_frame_id
        action.gripper = float(self._control.last_gripper)
        action.control_period = float(self.cfg.period_s)
        action.source = int(Source.STOP)
        self._action_pub.publish(action)
        if self._servo_pub is not None:
            twist = TwistStamped()
            twist.header.stamp = now
            twist.header.frame_id = self.cfg.servo_frame_id
            self._servo_pub.publish(twist)
            self._gripper_pub.publish(Float64(data=float(self._control.last_gripper)))
        self.get_logger().info(f"{why}: sent a zero command")

    # == inputs =================================================================================
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Executor thread: note the arrival and keep the newest message for the worker, nothing more.
        Decoding (a copy of a 6 MB HD frame, or a JPEG decode) happens on the worker, for the frames
        it uses only."""
        if self.lifecycle_state != "active":  # nothing to act on
            return
        now = time.monotonic()
        received = self.get_clock().now().to_msg()
        with self._mailbox:
            self._frame = _Frame(msg, now, received)  # replaces an undelivered older frame
            self._image = Received(now, _stamp_s(msg.header.stamp))
            self._mailbox.notify()
        # Hand the GIL to the worker now. After a callback rclpy's executor goes on in Python (its
        # wait-set bookkeeping) and would hold the GIL until the switch interval forced a hand-over;
        # blocking briefly lets the woken worker start at once (benchmarks/policy_node_latency.py,
        # docs/results/README.md: the node's own part of image -> prediction 0.5 -> 0.23 ms median; some of
        # that bookkeeping then runs during the forward pass). The executor thread pays 0.1 ms a frame.
        time.sleep(_GIL_HANDOFF_S)

    def _decode(self, frame: _Frame) -> np.ndarray | None:
        """Worker thread: the frame as RGB, or None (counted, logged, and the reason of the stop
        until a frame decodes again)."""
        msg = frame.msg
        try:
            if isinstance(msg, CompressedImage):
                image = compressed_msg_to_rgb(msg)
            else:  # raw rgb8: a view of the message, which the policy resizes; no copy of an HD frame
                image = image_msg_to_rgb(msg, copy=False)
        except ImageDecodeError as exc:
            with self._lock:
                self._dropped_images += 1
                self._image_error = str(exc)
                count = self._dropped_images
            self.get_logger().warning(f"dropped image ({count} so far): {exc}", throttle_duration_sec=1.0)
            return None
        with self._lock:
            self._image_error = None
        return image

    def _on_instruction(self, msg: String) -> None:
        """Checked once, here: a refused instruction clears the current one (the arm stops, with
        the reason as the alarm) until a valid one arrives; a repeat is not logged again."""
        text = msg.data.strip()
        problem = instruction_problem(text)
        policy = self.policy
        if problem is None and text and policy is not None:
            try:
                policy.check_instruction(text)
            except ValueError as exc:
                problem = str(exc)
        with self._lock:
            error = f"instruction refused: {problem}" if problem else None
            changed = text != self._instruction_text  # both subscriptions deliver a latched message
            self._instruction_text = text
            self._instruction = None if problem else text or None  # an empty string clears the instruction
            self._instruction_error = error
            self._instruction_in = Received(time.monotonic())
        if changed and error:
            self.get_logger().error(f"{error} ({text[:40]!r}{'...' if len(text) > 40 else ''}); the arm stops")
        elif changed:
            self.get_logger().info(f"instruction: {text!r}" if text else "instruction cleared")

    def _on_latched_incompatible(self, event: Any) -> None:
        self.get_logger().debug(
            f"volatile instruction publisher (served by the volatile subscription): {event.last_policy_kind}"
        )

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        twist = np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z])
        now = time.monotonic()
        stamp = msg.header.stamp
        with self._lock:
            self._twist = twist
            self._twist_stamp = None if _stamp_is_zero(stamp) else stamp
            self._twist_in = Received(now, _stamp_s(stamp))
            transition = twist_override(self._control, twist, now)
        if transition is not None:
            self._publish_transition(transition)

    def _on_gripper(self, msg: Float64) -> None:
        value = float(msg.data)
        now = time.monotonic()
        with self._lock:
            transition = gripper_override(self._control, value, self._teleop_gripper, now)
            self._teleop_gripper = value
            self._gripper_in = Received(now)
        if transition is not None:
            self._publish_transition(transition)

    def _on_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        position = np.array([p.x, p.y, p.z], dtype=np.float64)
        frame = msg.header.frame_id.strip("/")
        if frame != self.cfg.action_frame_id.strip("/"):
            error = f"ee_pose frame_id {msg.header.frame_id!r} is not the action frame {self.cfg.action_frame_id!r}"
        elif not np.isfinite(position).all():
            error = "ee_pose position is not finite"
        else:
            error = ""
        with self._lock:
            self._pose = position
            self._pose_in = Received(time.monotonic(), _stamp_s(msg.header.stamp))
            self._pose_frame_error = error

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
                if self.lifecycle_state != "active":
                    warnings.append(f"the node is {self.lifecycle_state}")
                if self._instruction is None:
                    warnings.append("no instruction yet")
                if self._image is None:
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
        policy = self.policy
        while True:
            with self._mailbox:
                while self._frame is None and self._pending_budget is None and not self._stopping:
                    self._mailbox.wait(timeout=0.5)
                if self._stopping:
                    return
                budget, self._pending_budget = self._pending_budget, None
                frame, self._frame = self._frame, None
            if budget is not None:  # between two forward passes: nothing else touches the model
                self._budget = budget
                self._apply_budget(policy)
            if frame is None:
                continue
            image = self._decode(frame)
            with self._lock:
                instruction = self._instruction
            if image is None or instruction is None:
                continue
            try:
                out = policy.act(image, instruction)
            except Exception as exc:  # noqa: BLE001 -- any failure must stop the robot, not the node
                message = f"inference failed: {type(exc).__name__}: {exc}"
                with self._lock:
                    self._inference_error = message
                    self._control.executor.reset()
                self.get_logger().error(message, throttle_duration_sec=2.0)
                continue
            ready = self.get_clock().now().to_msg()
            with self._lock:
                self._inference_error = None
                self._last_output = out
                stamp = frame.msg.header.stamp
                self._last_prediction_stamps = (stamp, frame.received_stamp, ready)
                self._prediction_ready = time.monotonic()
                self._chunk_pending = (out.actions, stamp)
            if self.cfg.command_timing == "prediction":
                self._run_on_executor(self._on_prediction_ready)  # the command goes out now, not at the next tick
            if self._deadline is not None:
                self._keep_deadline(policy, out.latency_ms, out.layers_executed)

    def _layer_share(self) -> float | None:
        """One layer's share of a full pass (the FLOP split) for the deadline's latency model;
        None (no fixed cost: slower to raise the cap again) when the policy can not count it."""
        from actdistill_ros.core.model.flops import layer_share

        try:
            share = layer_share(self.policy.flops_components())
        except Exception as exc:  # noqa: BLE001 -- a model the counter can not run still gets a deadline
            self.get_logger().warning(f"latency budget: no FLOP split ({type(exc).__name__}: {exc}); "
                                      "the cap comes back up more slowly")
            return None
        self.get_logger().info(f"latency budget {self.cfg.latency_budget_ms:g} ms: one layer is {share:.1%} "
                               "of a full pass (FLOP split)")
        return share

    def _apply_budget(self, policy) -> None:
        """Worker thread: the operator's budget, capped further by the latency deadline."""
        max_layers, threshold = self._budget
        deadline_cap = None if self._deadline is None else self._deadline.cap
        try:
            policy.set_budget(max_layers=layer_cap(max_layers, deadline_cap, policy.layers_total), threshold=threshold)
        except ValueError as exc:  # checked before; a policy may still refuse
            self.get_logger().error(f"compute budget not applied: {exc}")

    def _keep_deadline(self, policy, latency_ms: float, layers_executed: int) -> None:
        """Worker thread: record a pass against latency_budget_ms; move the cap when the rule says so."""
        deadline = self._deadline
        new_cap = deadline.update(latency_ms, layers_executed)
        if new_cap is not None:
            self._apply_budget(policy)
            self.get_logger().info(f"latency budget {deadline.budget_ms:g} ms: layer cap {new_cap}/"
                                   f"{policy.layers_total}", throttle_duration_sec=1.0)
        cap = layer_cap(self._budget[0], deadline.cap, policy.layers_total)
        with self._lock:
            self._deadline_report = (cap or 0, deadline.misses, deadline.p95_ms)

    def _run_on_executor(self, callback) -> None:
        """Worker thread: run ``callback`` on the executor thread as soon as it is free. A task,
        not a guard condition: both executors take tasks from other threads, and rclpy's
        EventsExecutor has no guard conditions."""
        executor = self.executor
        if executor is not None:  # None only while the node is not (or no longer) being spun
            executor.create_task(callback)

    def _on_prediction_ready(self) -> None:
        """Executor thread (command_timing 'prediction'): a command from the fresh prediction now,
        and the control timer restarted so the next tick is one period later, not sooner."""
        if self.lifecycle_state != "active" or self._timer is None:
            return
        self._set_timer_period(self.cfg.period_s)
        self._last_prediction_tick_ns = self.get_clock().now().nanoseconds
        self._on_tick()

    def _on_timer(self) -> None:
        """The control timer. With command_timing 'prediction' it is the fallback for when no
        prediction comes: its tick one period after a prediction-driven command is postponed by
        half a period (else a camera at the control rate, its frame a little late, would find a
        timer command sent just before its own); without a prediction by then, it ticks and goes
        back to the full period (a missed frame costs a 1.5-period gap, not two periods)."""
        last = self._last_prediction_tick_ns
        period = self.cfg.period_s
        if last is not None and self.get_clock().now().nanoseconds - last < 1.25 * period * 1e9:
            self._set_timer_period(0.5 * period)
            return
        if self._timer is not None and self._timer.timer_period_ns != round(period * 1e9):
            self._set_timer_period(period)
        self._on_tick()

    def _set_timer_period(self, period_s: float) -> None:
        """The next tick one ``period_s`` from now, the ones after every ``period_s``."""
        self._timer.timer_period_ns = round(period_s * 1e9)
        self._timer.reset()

    # == control loop =============================================================================
    def _on_tick(self) -> None:
        if self.lifecycle_state == "active":
            self._active_tick()
        elif self.lifecycle_state == "inactive":
            self._publish_status(None, self.get_clock().now().to_msg())

    def _active_tick(self) -> None:
        """Gather the inputs, let :func:`control_tick` decide, publish and log what it decided."""
        clock_now = self.get_clock().now()
        with self._lock:
            tick = control_tick(self.cfg, self._tick_inputs(time.monotonic(), clock_now.nanoseconds * 1e-9),
                                self._control)
            self._chunk_pending = None  # handed to the chunk executor
            self._last_tick = tick
        if tick.log is not None:  # (rclpy: one severity per logging call site)
            level, text = tick.log
            if level == "warn":
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)
        ros_now = clock_now.to_msg()
        self._publish_command(tick, ros_now)
        self._publish_status(tick, ros_now)

    def _tick_inputs(self, now: float, clock_s: float) -> TickInputs:
        """The newest inputs, as the tick sees them (under self._lock)."""
        return TickInputs(
            now_s=now, clock_s=clock_s,
            instruction=self._instruction_in, instruction_error=self._instruction_error,
            image=self._image, image_error=self._image_error,
            new_chunk=self._chunk_pending, has_prediction=self._last_output is not None,
            prediction_ready_s=self._prediction_ready, inference_error=self._inference_error,
            twist=self._twist, twist_in=self._twist_in, twist_stamp=self._twist_stamp,
            teleop_gripper=self._teleop_gripper, gripper_in=self._gripper_in,
            pose=self._pose, pose_in=self._pose_in, pose_frame_error=self._pose_frame_error,
        )

    def _publish_command(self, tick: TickOutput, ros_now: Any) -> None:
        """``action`` (and the servo twist and gripper command) from the tick's command."""
        cfg = self.cfg
        action = EndEffectorAction()
        action.header.stamp = ros_now if tick.stamp is None else tick.stamp
        action.header.frame_id = cfg.action_frame_id
        c = tick.command
        action.linear.x, action.linear.y, action.linear.z = float(c[0]), float(c[1]), float(c[2])
        action.angular.x, action.angular.y, action.angular.z = float(c[3]), float(c[4]), float(c[5])
        action.gripper = float(c[6])
        action.control_period = float(cfg.period_s)
        action.source = int(tick.source)
        if len(tick.chunk):
            action.chunk_length = len(tick.chunk)
            action.chunk = tick.chunk.astype(np.float32).reshape(-1).tolist()
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

    def _publish_status(self, tick: TickOutput | None, ros_now: Any) -> None:
        """``status``: what the tick decided (None: inactive, no tick) and the model's side."""
        status = PolicyStatus()
        status.header.stamp = ros_now
        mode = self._handoff.mode if tick is None else tick.mode
        status.mode, status.mode_name = int(mode), _MODE_NAMES[mode]
        status.shadow_error = status.shadow_cosine = math.nan
        if tick is None:
            status.lifecycle_state = "inactive"
            status.image_age_s = status.instruction_age_s = status.teleop_age_s = status.ee_pose_age_s = -1.0
            self._status_pub.publish(status)
            return
        status.lifecycle_state = "active"
        status.alarm, status.alarm_reason = tick.stopped, tick.stop_reason
        a = tick.ages
        status.image_age_s, status.instruction_age_s = float(a.image), float(a.instruction)
        status.teleop_age_s, status.ee_pose_age_s = float(a.teleop), float(a.ee_pose)
        status.control_rate_hz = float(tick.control_rate_hz)
        if tick.agreement is not None:
            status.shadow_error, status.shadow_cosine = float(tick.agreement.error), float(tick.agreement.cosine)
        counters = tick.counters
        for name in ("linear_step_clamps", "angular_step_clamps", "gripper_clamps", "linear_change_limits",
                     "angular_change_limits", "workspace_clips", "non_finite_commands", "stop_events"):
            setattr(status, name, int(getattr(counters, name)))
        status.last_limit_event = counters.last_event
        self._add_model_status(status)
        self._status_pub.publish(status)

    def _add_model_status(self, status: PolicyStatus) -> None:
        """The inference side of ``status``: the newest prediction, the layer cap and the deadline."""
        with self._lock:
            out, prediction_stamps = self._last_output, self._last_prediction_stamps
            cap, misses, p95 = self._deadline_report
            status.dropped_images = int(self._dropped_images)
        if out is not None:
            status.inference_latency_ms = float(out.latency_ms)
            status.layers_executed = int(out.layers_executed)
            status.layers_total = int(out.layers_total)
            status.flops_ratio = float(out.flops_ratio)
            (status.prediction_image_stamp, status.prediction_received_stamp,
             status.prediction_ready_stamp) = prediction_stamps
        elif self._policy_info is not None:
            status.layers_total = int(self._policy_info[0])
        status.latency_budget_ms = float(self.cfg.latency_budget_ms)
        if self._deadline is None:
            cap = self._budget[0] or 0
        status.layer_cap, status.latency_budget_misses, status.latency_p95_ms = int(cap), int(misses), float(p95)

    def _publish_diagnostics(self) -> None:
        cfg = self.cfg
        tick = self._last_tick if self.lifecycle_state == "active" else None
        with self._lock:
            counters = self._control.filter.counters
            dropped = self._dropped_images
        out = self._last_output if self.lifecycle_state == "active" else None
        stopped, reason = (False, "") if tick is None else (tick.stopped, tick.stop_reason)
        a = tick.ages if tick is not None else StatusAges()
        ages = {"image": a.image, "instruction": a.instruction, "teleop": a.teleop}
        if cfg.workspace is not None:
            ages["ee_pose"] = a.ee_pose
        rate = 0.0 if tick is None else tick.control_rate_hz
        report = diagnostic_report(
            lifecycle_state=self.lifecycle_state, mode=self._handoff.mode.name, stopped=stopped, stop_reason=reason,
            latency_ms=None if out is None else float(out.latency_ms),
            layers="" if out is None else f"{out.layers_executed}/{out.layers_total}",
            control_rate_hz=rate, target_rate_hz=cfg.control_rate_hz, ages=ages, counters=counters,
            dropped_images=dropped,
        )
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        entry = DiagnosticStatus()
        entry.level = bytes([report.level])
        entry.name = f"{self.get_fully_qualified_name()}: policy"
        entry.message = report.message
        entry.hardware_id = cfg.action_frame_id
        entry.values = [KeyValue(key=k, value=v) for k, v in report.values]
        msg.status = [entry]
        self._diagnostics_pub.publish(msg)


def _descriptor(spec: ParamSpec, with_range: bool = True) -> ParameterDescriptor:
    # numbers: accept 10 as well as 10.0 from -p / YAML; validate_config checks types
    numeric = isinstance(spec.default, int | float | list) and not isinstance(spec.default, bool)
    return descriptor(spec.description, spec.default, spec.range if with_range else None, read_only=not spec.runtime,
                      dynamic_typing=numeric)


def _qos(depth: int, reliable: bool, latched: bool) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def autostart(node: PolicyNode) -> None:
    """With ``autostart``: configure and activate now; a failed configure is a configuration error."""
    if not node.cfg.autostart:
        return
    if node.trigger_configure() != SUCCESS:
        raise ConfigError(node.configure_error or "configure failed")
    if node.trigger_activate() != SUCCESS:
        raise ConfigError("activate failed")


def main(args: list[str] | None = None) -> int:
    # The executor thread runs Python (its wait-set bookkeeping, callbacks) while the inference
    # thread's forward pass needs the GIL between every torch op; at the default 5 ms switch
    # interval one executor burst could hold a 1-2 ms forward pass for milliseconds.
    sys.setswitchinterval(0.0005)
    return run_node(PolicyNode, NODE_NAME, (ConfigError,), PolicyNode.shutdown, args, start=autostart,
                    executor_kind=lambda node: node.cfg.executor)


if __name__ == "__main__":
    sys.exit(main())
