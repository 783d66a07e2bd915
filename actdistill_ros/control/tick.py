"""One control tick of the policy node, decided without ROS: the inputs as they stand and the
controllers' state in, the command to send and what to report about it out.

The node (:mod:`actdistill_ros.nodes.policy_node`) gathers :class:`TickInputs` under its lock, calls
:func:`control_tick` and publishes the :class:`TickOutput`. Every decision about what reaches the arm
is made here, so that tests can check it tick by tick without DDS or a model:

* the policy drives (AUTONOMY) only with a fresh instruction, a fresh image and an action for this
  step; otherwise the arm stops, with the root cause as the reason
  (:func:`~actdistill_ros.control.monitoring.policy_stop_reason`);
* the human drives (TELEOP, SHADOW) only with a fresh teleop input; otherwise the arm stops;
* the mode, the ramp into AUTONOMY and the shadow agreement come from the
  :class:`~actdistill_ros.control.handoff.HandoffController`;
* with a workspace box, no fresh end-effector pose means a stop;
* every command passes the :class:`~actdistill_ros.control.safety.CommandFilter` (finite, per-step
  limits, change limit, workspace box): a non-finite one becomes a stop.

The override on a teleop input (:func:`twist_override`, :func:`gripper_override`) is decided here
too; the node calls it from the teleop callbacks, so control is the human's before the next tick.

Clocks: ``now_s`` and arrival times are monotonic (a source that stops ages, even in a paused
simulation); ``clock_s`` and header stamps are the node's ROS clock (see
:func:`~actdistill_ros.control.safety.input_age`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actdistill_ros.control.chunking import ChunkExecutor, ChunkStep
from actdistill_ros.control.handoff import Agreement, HandoffConfig, HandoffController, Mode, Source, Transition
from actdistill_ros.control.monitoring import StopReporter, policy_stop_reason, pose_stop_reason
from actdistill_ros.control.node_config import NodeConfig
from actdistill_ros.control.safety import (
    COMMAND_DIM,
    CommandFilter,
    InputAge,
    SafetyCounters,
    input_age,
    make_safe,
    stop_command,
)

NON_FINITE_STOP = "non-finite command replaced by stop"


@dataclass(frozen=True)
class Received:
    """An input's arrival: when (monotonic [s]) and its header stamp ([s] on the ROS clock; 0: unstamped)."""

    received: float
    stamp_s: float = 0.0


@dataclass(frozen=True, eq=False)
class TickInputs:
    """The newest inputs as one tick sees them (None: never received)."""

    now_s: float  # monotonic
    clock_s: float  # the node's ROS clock
    instruction: Received | None = None
    instruction_error: str | None = None  # why the newest instruction was refused
    image: Received | None = None
    image_error: str | None = None  # why the newest image given to the model did not decode
    new_chunk: tuple[np.ndarray, Any] | None = None  # a prediction since the last tick: (actions [N, 7], its stamp)
    has_prediction: bool = False  # the model has produced a prediction since configure
    prediction_ready_s: float | None = None  # monotonic time the newest prediction became ready
    inference_error: str | None = None  # why the newest inference failed
    twist: np.ndarray | None = None  # the newest teleop velocities [6] (m/s, rad/s)
    twist_in: Received | None = None
    twist_stamp: Any = None  # the twist's header stamp for a HUMAN command (None: unstamped)
    teleop_gripper: float | None = None  # the newest teleop gripper closure
    gripper_in: Received | None = None
    pose: np.ndarray | None = None  # end-effector position [3] (workspace box only)
    pose_in: Received | None = None
    pose_frame_error: str = ""  # why the newest pose can not be used ('' if it can)


@dataclass(frozen=True)
class StatusAges:
    """Input ages for ``status`` [s]; -1: never received. ``teleop``: the fresher of twist and gripper."""

    image: float = -1.0
    instruction: float = -1.0
    teleop: float = -1.0
    ee_pose: float = -1.0


@dataclass(frozen=True, eq=False)
class TickOutput:
    """What one tick decided: the command and what ``status`` and the log say about it."""

    command: np.ndarray  # float64 [7]: finite, within the limits (a stop: zero motion, gripper held)
    source: Source
    mode: Mode
    stop_reason: str  # why the command is a stop ('' when it is not)
    stamp: Any  # header stamp of the command: the image's (POLICY, BLEND), the twist's (HUMAN); None: now
    chunk: np.ndarray  # float64 [M, 7]: the rest of the driving chunk, made safe (POLICY, BLEND; else M = 0)
    agreement: Agreement | None  # SHADOW: the policy against the human
    ages: StatusAges
    control_rate_hz: float  # ticks per second of the node clock over the last second or so
    counters: SafetyCounters  # the command filter's counts after this tick (a copy)
    log: tuple[str, str] | None  # ('warn' | 'info', text) about a safety stop to log now

    @property
    def stopped(self) -> bool:
        return self.source == Source.STOP


@dataclass
class ControlState:
    """What the ticks carry from one to the next (not thread-safe: the node holds its lock)."""

    handoff: HandoffController  # the mode: outlives a reconfiguration (the node passes its own)
    executor: ChunkExecutor
    filter: CommandFilter
    stop_reporter: StopReporter = field(default_factory=StopReporter)
    last_gripper: float = 0.0  # the gripper of the last command: a stop holds it
    ticks: deque[float] = field(default_factory=deque)  # node-clock times of the recent ticks
    rate_window_s: float = 1.0

    @classmethod
    def initial(cls, cfg: NodeConfig, handoff: HandoffController | None = None) -> ControlState:
        """Fresh chunks, filter and counters for ``cfg``; the given handoff (mode) or a new one."""
        if handoff is None:
            handoff = HandoffController(HandoffConfig(cfg.deadband, cfg.ramp_s, cfg.gripper_deadband),
                                        cfg.initial_mode)
        return cls(handoff, ChunkExecutor(cfg.temporal_ensemble, cfg.ensemble_k), CommandFilter(cfg.command_filter),
                   last_gripper=cfg.limits.gripper_min, rate_window_s=max(1.0, 3.0 * cfg.period_s))

    def reactivate(self, now_s: float) -> None:
        """The arm was not commanded for a while (lifecycle activation): no old chunk, motion ramps up
        from rest through the filter, and AUTONOMY blends in again from standing still."""
        self.executor.reset()
        self.filter.reset()
        self.handoff.restart_ramp(now_s)


def control_tick(cfg: NodeConfig, inputs: TickInputs, state: ControlState) -> TickOutput:
    """The command of this tick, advancing ``state`` (chunk step, ramp, filter, rate, stop log).

    The single place that decides what the arm gets: whatever the inputs, the command is finite
    and within ``cfg.limits``, and a stop whenever the input driving the arm is missing or stale.
    """
    rate = _tick_rate(state, inputs.clock_s)
    if inputs.new_chunk is not None:
        actions, stamp = inputs.new_chunk
        state.executor.add(actions, stamp=stamp)
    step = state.executor.next()  # advances every tick, whatever the mode
    age = _ager(cfg, inputs)
    image_age, instruction_age = age(inputs.image), age(inputs.instruction)
    twist_age, gripper_age, pose_age = age(inputs.twist_in), age(inputs.gripper_in), age(inputs.pose_in)
    unavailable = _policy_unavailable(cfg, inputs, instruction_age, image_age, has_step=step is not None)
    human, human_reason = _human_command(cfg, inputs, twist_age, gripper_age, state.last_gripper)
    decision = state.handoff.step(inputs.now_s, human, None if unavailable else step.action,
                                  hold_gripper=state.last_gripper, policy_unavailable_reason=unavailable,
                                  human_unavailable_reason=human_reason)
    command, source, stop_reason = decision.command, decision.source, decision.stop_reason
    if cfg.workspace is not None and (pose_reason := pose_stop_reason(
            pose_age, cfg.pose_timeout_s, cfg.stamp_skew_tolerance_s, inputs.pose_frame_error)):
        # like every stop, it holds the gripper: the driver's gripper command waits for the pose too
        command, source, stop_reason = stop_command(state.last_gripper), Source.STOP, pose_reason
    filtered = state.filter.apply(command, state.last_gripper, is_stop=source == Source.STOP, position=inputs.pose)
    if filtered.stop and source != Source.STOP:
        source, stop_reason = Source.STOP, NON_FINITE_STOP
    state.last_gripper = float(filtered.command[6])
    driving = step if source in (Source.POLICY, Source.BLEND) else None
    return TickOutput(
        command=filtered.command, source=source, mode=state.handoff.mode,
        stop_reason=stop_reason if source == Source.STOP else "",
        stamp=_command_stamp(cfg, source, driving, inputs, twist_age),
        chunk=_safe_rest(cfg, driving, hold_gripper=state.last_gripper),
        agreement=decision.agreement,
        ages=_status_ages(image_age, instruction_age, twist_age, gripper_age, pose_age),
        control_rate_hz=rate, counters=dataclasses.replace(state.filter.counters),
        log=state.stop_reporter.update(source == Source.STOP, stop_reason, inputs.now_s),
    )


def twist_override(state: ControlState, twist: np.ndarray, now_s: float) -> Transition | None:
    """A new teleop twist: in AUTONOMY, one above the deadband (or non-finite) hands control to
    the human at once (see :meth:`HandoffController.human_input`)."""
    magnitude = float(np.linalg.norm(twist)) if np.isfinite(twist).all() else math.inf
    return _overridden(state, state.handoff.human_input(magnitude, now_s))


def gripper_override(state: ControlState, value: float, previous: float | None, now_s: float) -> Transition | None:
    """A new teleop gripper command: in AUTONOMY, a change above the gripper deadband from the human's
    ``previous`` one (None: from the commanded gripper) hands control to the human at once."""
    reference = previous if previous is not None else state.last_gripper
    return _overridden(state, state.handoff.human_gripper_input(value, reference, now_s))


def _overridden(state: ControlState, transition: Transition | None) -> Transition | None:
    if transition is not None:
        state.executor.reset()  # the policy's plan is void: back in AUTONOMY, it waits for a fresh prediction
    return transition


def _tick_rate(state: ControlState, clock_s: float) -> float:
    """Ticks over the last second or so, on the node clock (control steps per simulated second under
    use_sim_time): robust to one late tick and the catch-up after it, unlike a filtered 1/dt."""
    ticks = state.ticks
    ticks.append(clock_s)
    while clock_s - ticks[0] > state.rate_window_s:
        ticks.popleft()
    return (len(ticks) - 1) / (ticks[-1] - ticks[0]) if len(ticks) > 1 and ticks[-1] > ticks[0] else 0.0


def _ager(cfg: NodeConfig, inputs: TickInputs):
    def age(received: Received | None) -> InputAge | None:
        if received is None:
            return None
        return input_age(inputs.now_s, received.received, received.stamp_s, inputs.clock_s,
                         cfg.stamp_skew_tolerance_s)

    return age


def _policy_unavailable(cfg: NodeConfig, inputs: TickInputs, instruction_age: InputAge | None,
                        image_age: InputAge | None, has_step: bool) -> str:
    """Why the policy can not drive this tick, root cause first ('' when it can)."""
    prediction_age_s = None if inputs.prediction_ready_s is None else inputs.now_s - inputs.prediction_ready_s
    return policy_stop_reason(
        instruction_age=instruction_age, instruction_timeout_s=cfg.instruction_timeout_s,
        image_age=image_age, image_timeout_s=cfg.image_timeout_s, skew_tolerance_s=cfg.stamp_skew_tolerance_s,
        inference_error=inputs.inference_error, has_prediction=inputs.has_prediction, has_step=has_step,
        period_s=cfg.period_s, prediction_age_s=prediction_age_s, image_error=inputs.image_error,
        instruction_error=inputs.instruction_error,
    )


def _twist_fresh(cfg: NodeConfig, twist_age: InputAge | None) -> bool:
    return twist_age is not None and not twist_age.skewed and twist_age.age_s <= cfg.teleop_timeout_s


def _human_command(cfg: NodeConfig, inputs: TickInputs, twist_age: InputAge | None, gripper_age: InputAge | None,
                   last_gripper: float) -> tuple[np.ndarray | None, str]:
    """The human's command for this step from the fresh teleop inputs (a twist is velocity: times the
    period), or None and why not."""
    twist_fresh = _twist_fresh(cfg, twist_age)
    gripper_fresh = gripper_age is not None and gripper_age.age_s <= cfg.teleop_timeout_s
    if not (twist_fresh or gripper_fresh):
        if inputs.twist_in is None and inputs.gripper_in is None:
            return None, "no teleop input"
        return None, f"teleop stale (> {cfg.teleop_timeout_s:.2f} s)"
    command = np.zeros(COMMAND_DIM, dtype=np.float64)
    if twist_fresh:
        command[:6] = inputs.twist * cfg.period_s
    command[6] = inputs.teleop_gripper if inputs.teleop_gripper is not None else last_gripper
    return command, ""


def _command_stamp(cfg: NodeConfig, source: Source, driving: ChunkStep | None, inputs: TickInputs,
                   twist_age: InputAge | None) -> Any:
    """The image's stamp on a policy command (image-to-action latency is measurable downstream), the
    twist's on a human one; None (now) otherwise."""
    if driving is not None and driving.stamp is not None:
        return driving.stamp
    if source == Source.HUMAN and _twist_fresh(cfg, twist_age):
        return inputs.twist_stamp
    return None


def _safe_rest(cfg: NodeConfig, driving: ChunkStep | None, hold_gripper: float) -> np.ndarray:
    """The rest of the chunk driving this command, each row made safe (sent along for a downstream
    controller that interpolates)."""
    if driving is None or not len(driving.remaining):
        return np.zeros((0, COMMAND_DIM), dtype=np.float64)
    return np.stack([make_safe(row, cfg.limits, hold_gripper=hold_gripper).command for row in driving.remaining])


def _status_ages(image: InputAge | None, instruction: InputAge | None, twist: InputAge | None,
                 gripper: InputAge | None, pose: InputAge | None) -> StatusAges:
    def seconds(age: InputAge | None) -> float:
        return -1.0 if age is None else age.age_s

    teleop = [a.age_s for a in (twist, gripper) if a is not None]
    return StatusAges(image=seconds(image), instruction=seconds(instruction), teleop=min(teleop) if teleop else -1.0,
                ee_pose=seconds(pose))
