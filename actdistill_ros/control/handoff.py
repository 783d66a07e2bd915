"""Who drives the robot: the mode state machine TELEOP / SHADOW / AUTONOMY.

* TELEOP: the human command passes through.
* SHADOW: the human command passes through; the policy runs alongside and its agreement
  with the human (L2 error of the 7-D commands, cosine of the 6-D motion parts) is reported.
* AUTONOMY: the policy drives. On entering AUTONOMY the command ramps linearly from the
  last command issued before the switch (the human's, or a stop if teleop was stale) to
  the policy command over ``ramp_s`` seconds (source BLEND).

Transitions happen on explicit requests (:meth:`HandoffController.request`) and on a
human override: in AUTONOMY, a teleop twist whose magnitude exceeds the deadband, or a
gripper command that changes the gripper by more than the gripper deadband, hands control
back to TELEOP at once (:meth:`HandoffController.human_input`,
:meth:`HandoffController.human_gripper_input`), so the very next command is the human's.
Every transition is returned as a :class:`Transition` with a reason, for the node to log and
publish.

Overrides are evaluated on teleop *input events*, not on held state: a large teleop
command received long before a switch to AUTONOMY does not bounce the mode back.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from actdistill_ros.control.safety import COMMAND_DIM


class Mode(enum.IntEnum):
    """Values match ``PolicyStatus.MODE_*`` and ``SetMode.Request.MODE_*``."""

    TELEOP = 0
    SHADOW = 1
    AUTONOMY = 2

    @classmethod
    def parse(cls, value: str | int | Mode) -> Mode:
        """Accept a Mode, its integer value or its (case-insensitive) name."""
        if isinstance(value, Mode):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        elif isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        names = ", ".join(m.name.lower() for m in cls)
        raise ValueError(f"unknown mode {value!r} (expected one of {names} or 0..{len(cls) - 1})")


class Source(enum.IntEnum):
    """Values match ``EndEffectorAction.SOURCE_*``."""

    STOP = 0
    HUMAN = 1
    POLICY = 2
    BLEND = 3


@dataclass(frozen=True)
class Transition:
    from_mode: Mode
    to_mode: Mode
    reason: str
    time_s: float


@dataclass(frozen=True)
class Agreement:
    """SHADOW-mode agreement of the policy command with the human command."""

    error: float  # L2 norm of (policy - human) over all 7 dims
    cosine: float  # cosine similarity of the 6-D motion parts (see :func:`agreement`)


@dataclass(frozen=True)
class Decision:
    """The command of one control tick (before the safety filter)."""

    command: np.ndarray  # float64 [7]
    source: Source
    mode: Mode
    blend_alpha: float = 1.0  # weight of the policy during a ramp (1 outside ramps)
    agreement: Agreement | None = None
    stop_reason: str = ""  # why the command is a stop ('' otherwise)


def agreement(policy: np.ndarray, human: np.ndarray, eps: float = 1e-9) -> Agreement:
    """L2 error of the 7-D commands and cosine of the 6-D motion parts.

    The cosine is 1.0 when both motions are (near) zero -- both say "stand still" -- and
    0.0 when exactly one of them is, so it is always a finite number in [-1, 1].
    """
    p = np.asarray(policy, dtype=np.float64).reshape(COMMAND_DIM)
    h = np.asarray(human, dtype=np.float64).reshape(COMMAND_DIM)
    error = float(np.linalg.norm(p - h))
    pm, hm = p[:6], h[:6]
    np_, nh = float(np.linalg.norm(pm)), float(np.linalg.norm(hm))
    if np_ <= eps and nh <= eps:
        cosine = 1.0
    elif np_ <= eps or nh <= eps:
        cosine = 0.0
    else:
        cosine = float(np.clip(np.dot(pm, hm) / (np_ * nh), -1.0, 1.0))
    return Agreement(error=error, cosine=cosine)


@dataclass
class HandoffConfig:
    deadband: float = 0.02  # teleop magnitude above which a human input overrides AUTONOMY
    ramp_s: float = 1.0  # seconds to blend from the last human command to the policy
    gripper_deadband: float = 0.05  # a human gripper change above this overrides AUTONOMY

    def __post_init__(self) -> None:
        for name in ("deadband", "ramp_s", "gripper_deadband"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"HandoffConfig.{name} must be a finite number >= 0, got {value!r}")


@dataclass
class HandoffController:
    """The mode state machine. Not thread-safe: the node serialises calls with a lock.

    Times are seconds on any monotonic clock, passed in by the caller (testable).
    """

    config: HandoffConfig = field(default_factory=HandoffConfig)
    mode: Mode = Mode.TELEOP
    _ramp_start_s: float | None = field(default=None, init=False, repr=False)
    _ramp_from: np.ndarray | None = field(default=None, init=False, repr=False)
    _last_human: np.ndarray | None = field(default=None, init=False, repr=False)
    history: list[Transition] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.mode = Mode.parse(self.mode)

    # -- transitions -------------------------------------------------------------------
    def _switch(self, to_mode: Mode, reason: str, now_s: float) -> Transition:
        tr = Transition(from_mode=self.mode, to_mode=to_mode, reason=reason, time_s=now_s)
        self.mode = to_mode
        if to_mode == Mode.AUTONOMY:
            self._ramp_start_s = now_s
            self._ramp_from = None if self._last_human is None else self._last_human.copy()
        else:
            self._ramp_start_s = None
            self._ramp_from = None
        self.history.append(tr)
        del self.history[:-100]
        return tr

    def request(self, mode: Mode | str | int, reason: str, now_s: float) -> Transition | None:
        """Explicit switch; ``None`` when already in ``mode`` (nothing changes, no ramp restart)."""
        target = Mode.parse(mode)
        if target == self.mode:
            return None
        return self._switch(target, reason or "request", now_s)

    def human_input(self, magnitude: float, now_s: float) -> Transition | None:
        """Report a new teleop input of the given magnitude (e.g. norm of the twist).

        In AUTONOMY, ``magnitude > deadband`` switches to TELEOP immediately.
        """
        if self.mode != Mode.AUTONOMY:
            return None
        if not math.isfinite(magnitude) or magnitude > self.config.deadband:
            mag = f"{magnitude:.3g}" if math.isfinite(magnitude) else str(magnitude)
            reason = f"human override (|twist| {mag} > deadband {self.config.deadband:.3g})"
            return self._switch(Mode.TELEOP, reason, now_s)
        return None

    def human_gripper_input(self, value: float, reference: float, now_s: float) -> Transition | None:
        """Report a new teleop gripper command ``value`` (0 open .. 1 closed).

        ``reference`` is what the human's gripper command is compared with: their previous one,
        or (for the first) the gripper the arm is commanded to. In AUTONOMY a change above
        ``gripper_deadband`` (or a non-finite value) switches to TELEOP immediately, like a twist.
        """
        if self.mode != Mode.AUTONOMY:
            return None
        change = abs(value - reference)
        if not math.isfinite(change) or change > self.config.gripper_deadband:
            text = f"{change:.3g}" if math.isfinite(change) else str(change)
            reason = f"human override (gripper change {text} > gripper deadband {self.config.gripper_deadband:.3g})"
            return self._switch(Mode.TELEOP, reason, now_s)
        return None

    def restart_ramp(self, now_s: float) -> None:
        """After the arm was not commanded for a while (e.g. a lifecycle deactivation): in AUTONOMY,
        blend into the policy again, from standing still."""
        self._last_human = None
        if self.mode == Mode.AUTONOMY:
            self._ramp_start_s = now_s
            self._ramp_from = None

    # -- per tick ------------------------------------------------------------------------
    def ramp_alpha(self, now_s: float) -> float:
        """Weight of the policy command: 0 at the switch to AUTONOMY, 1 after ``ramp_s``."""
        if self.mode != Mode.AUTONOMY or self._ramp_start_s is None:
            return 1.0
        if self.config.ramp_s <= 0.0:
            return 1.0
        return float(min(max((now_s - self._ramp_start_s) / self.config.ramp_s, 0.0), 1.0))

    def step(
        self,
        now_s: float,
        human: np.ndarray | None,
        policy: np.ndarray | None,
        hold_gripper: float = 0.0,
        policy_unavailable_reason: str = "no policy command",
        human_unavailable_reason: str = "no teleop command",
    ) -> Decision:
        """The command of this tick.

        ``human``/``policy`` are the current 7-D commands, ``None`` when not available
        (stale or missing; the caller decides). A missing driver gives a stop with
        ``hold_gripper`` and a ``stop_reason``.
        """
        human_v = None if human is None else np.asarray(human, dtype=np.float64).reshape(COMMAND_DIM)
        policy_v = None if policy is None else np.asarray(policy, dtype=np.float64).reshape(COMMAND_DIM)
        stop = np.zeros(COMMAND_DIM, dtype=np.float64)
        stop[6] = hold_gripper

        if self.mode in (Mode.TELEOP, Mode.SHADOW):
            agree = None
            if self.mode == Mode.SHADOW and human_v is not None and policy_v is not None:
                agree = agreement(policy_v, human_v)
            if human_v is None:
                self._last_human = stop.copy()
                return Decision(
                    stop, Source.STOP, self.mode, agreement=agree, stop_reason=human_unavailable_reason
                )
            self._last_human = human_v.copy()
            return Decision(human_v.copy(), Source.HUMAN, self.mode, agreement=agree)

        # AUTONOMY
        if policy_v is None:
            return Decision(stop, Source.STOP, self.mode, stop_reason=policy_unavailable_reason)
        alpha = self.ramp_alpha(now_s)
        if alpha >= 1.0:
            self._ramp_start_s = None
            return Decision(policy_v.copy(), Source.POLICY, self.mode)
        start = self._ramp_from
        if start is None:  # no command issued before the switch: ramp up from standing still
            start = np.zeros(COMMAND_DIM, dtype=np.float64)
            start[6] = hold_gripper
        blended = (1.0 - alpha) * start + alpha * policy_v
        return Decision(blended, Source.BLEND, self.mode, blend_alpha=alpha)
