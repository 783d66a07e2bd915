"""Make any 7-D end-effector command safe to send to a robot.

A command is ``(dx, dy, dz, droll, dpitch, dyaw, gripper)`` for one control step. The
rules, applied in this order:

1. wrong shape -> ``ValueError`` (a programming error, not a runtime condition);
2. any non-finite value (NaN, +-inf) -> the whole command becomes a *stop*: zero motion,
   the gripper held at ``hold_gripper`` (the last safe gripper value; opening a gripper
   because a model produced NaN could drop what it holds);
3. the linear part is scaled down so that its Euclidean norm is at most
   ``max_linear_step`` (direction kept), likewise the angular part with ``max_angular_step``;
4. the gripper is clipped to ``[gripper_min, gripper_max]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

COMMAND_DIM = 7


@dataclass(frozen=True)
class SafetyLimits:
    """Per-control-step limits on a command."""

    max_linear_step: float = 0.02  # m per control step (norm of dx, dy, dz)
    max_angular_step: float = 0.1  # rad per control step (norm of droll, dpitch, dyaw)
    gripper_min: float = 0.0  # 0 = fully open
    gripper_max: float = 1.0  # 1 = fully closed

    def __post_init__(self) -> None:
        for name in ("max_linear_step", "max_angular_step", "gripper_min", "gripper_max"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"SafetyLimits.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"SafetyLimits.{name} must be >= 0, got {value}")
        if self.gripper_max > 1.0:
            raise ValueError(f"SafetyLimits.gripper_max must be <= 1, got {self.gripper_max}")
        if self.gripper_min > self.gripper_max:
            raise ValueError(
                f"SafetyLimits.gripper_min ({self.gripper_min}) must be <= gripper_max ({self.gripper_max})"
            )


@dataclass(frozen=True)
class SafeCommand:
    """The safe command and what had to be changed to get it."""

    command: np.ndarray  # float64 [7], always finite and within the limits
    non_finite: bool = False  # input had NaN/inf: replaced by a stop
    linear_clamped: bool = False
    angular_clamped: bool = False
    gripper_clamped: bool = False

    @property
    def modified(self) -> bool:
        return self.non_finite or self.linear_clamped or self.angular_clamped or self.gripper_clamped

    def describe(self) -> str:
        """Comma-separated list of what was changed ('' when nothing was)."""
        parts = []
        if self.non_finite:
            parts.append("non-finite command replaced by stop")
        if self.linear_clamped:
            parts.append("linear step clamped")
        if self.angular_clamped:
            parts.append("angular step clamped")
        if self.gripper_clamped:
            parts.append("gripper clamped")
        return ", ".join(parts)


def stop_command(hold_gripper: float = 0.0) -> np.ndarray:
    """Zero motion with the gripper held at ``hold_gripper``."""
    cmd = np.zeros(COMMAND_DIM, dtype=np.float64)
    cmd[6] = hold_gripper
    return cmd


def _clamp_norm(vec: np.ndarray, limit: float) -> tuple[np.ndarray, bool]:
    norm = float(np.linalg.norm(vec))
    if norm <= limit:
        return vec, False
    if limit <= 0.0:
        return np.zeros_like(vec), True
    return vec * (limit / norm), True


def make_safe(command: np.ndarray, limits: SafetyLimits, hold_gripper: float | None = None) -> SafeCommand:
    """Return a finite command within ``limits`` and flags saying what was changed.

    ``hold_gripper`` is the gripper value of a stop (non-finite input); ``None`` means
    ``limits.gripper_min``. It is clipped to the gripper limits too.
    """
    cmd = np.asarray(command, dtype=np.float64).reshape(-1)
    if cmd.shape != (COMMAND_DIM,):
        raise ValueError(f"command must have {COMMAND_DIM} elements, got shape {np.shape(command)}")
    hold = limits.gripper_min if hold_gripper is None or not math.isfinite(hold_gripper) else hold_gripper
    hold = min(max(hold, limits.gripper_min), limits.gripper_max)
    if not np.isfinite(cmd).all():
        return SafeCommand(command=stop_command(hold), non_finite=True)
    linear, lin_c = _clamp_norm(cmd[0:3], limits.max_linear_step)
    angular, ang_c = _clamp_norm(cmd[3:6], limits.max_angular_step)
    gripper = float(cmd[6])
    grip_c = not (limits.gripper_min <= gripper <= limits.gripper_max)
    gripper = min(max(gripper, limits.gripper_min), limits.gripper_max)
    out = np.empty(COMMAND_DIM, dtype=np.float64)
    out[0:3] = linear
    out[3:6] = angular
    out[6] = gripper
    return SafeCommand(command=out, linear_clamped=lin_c, angular_clamped=ang_c, gripper_clamped=grip_c)


# -- beyond one command: what a real arm needs -------------------------------------------------


@dataclass(frozen=True)
class WorkspaceBox:
    """An axis-aligned box the end effector must stay in, in the frame of the commands [m]."""

    min_xyz: tuple[float, float, float]
    max_xyz: tuple[float, float, float]

    def __post_init__(self) -> None:
        for name in ("min_xyz", "max_xyz"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, int | float) and math.isfinite(v) for v in value):
                raise ValueError(f"WorkspaceBox.{name} must be 3 finite numbers (x, y, z), got {value!r}")
        bad = [axis for axis, lo, hi in zip("xyz", self.min_xyz, self.max_xyz, strict=True) if not lo < hi]
        if bad:
            raise ValueError(f"WorkspaceBox: min must be < max on every axis ({', '.join(bad)} is not): "
                             f"min {list(self.min_xyz)}, max {list(self.max_xyz)}")


def clip_to_workspace(linear: np.ndarray, position: np.ndarray, box: WorkspaceBox) -> tuple[np.ndarray, str]:
    """Clip the position delta ``linear`` so that ``position + linear`` stays in ``box``.

    Per axis (the arm may slide along a wall): the delta is limited to ``[min - p, max - p]``.
    From outside the box (e.g. a pose that drifted out) only motion back towards it is allowed:
    the delta on that axis is limited to ``[min(0, min - p), max(0, max - p)]``, so the filter
    never *creates* motion. Returns the delta and a description of what was clipped ('' if
    nothing), e.g. ``"x > 0.6"``.
    """
    delta = np.asarray(linear, dtype=np.float64).reshape(3).copy()
    p = np.asarray(position, dtype=np.float64).reshape(3)
    clipped = []
    for i, axis in enumerate("xyz"):
        lo = min(0.0, box.min_xyz[i] - p[i])
        hi = max(0.0, box.max_xyz[i] - p[i])
        if delta[i] > hi:
            delta[i] = hi
            clipped.append(f"{axis} > {box.max_xyz[i]:g}")
        elif delta[i] < lo:
            delta[i] = lo
            clipped.append(f"{axis} < {box.min_xyz[i]:g}")
    return delta, ", ".join(clipped)


def limit_change(command: np.ndarray, previous: np.ndarray, max_linear_change: float,
                 max_angular_change: float) -> tuple[np.ndarray, bool, bool]:
    """Limit how much the linear and the angular part may change from ``previous`` in one tick.

    The change vector of each part is scaled down to the limit by norm (0 = no limit). Returns
    the command and whether the linear/angular part was limited. Both the previous and the new
    command being within the per-step norm limits, the result is too (it lies between them).
    """
    cmd = np.asarray(command, dtype=np.float64).reshape(COMMAND_DIM).copy()
    prev = np.asarray(previous, dtype=np.float64).reshape(COMMAND_DIM)
    limited = []
    for part, limit in ((slice(0, 3), max_linear_change), (slice(3, 6), max_angular_change)):
        if limit <= 0.0:
            limited.append(False)
            continue
        change, was_limited = _clamp_norm(cmd[part] - prev[part], limit)
        cmd[part] = prev[part] + change
        limited.append(was_limited)
    return cmd, limited[0], limited[1]


@dataclass(frozen=True)
class InputAge:
    """How old an input is, and whether its stamp can be trusted."""

    age_s: float  # >= 0
    stamp_ahead_s: float = 0.0  # > skew tolerance: the stamp is in the future, clocks disagree

    @property
    def skewed(self) -> bool:
        return self.stamp_ahead_s > 0.0


def input_age(now_s: float, received_s: float, stamp_s: float | None, clock_now_s: float,
              skew_tolerance_s: float) -> InputAge:
    """Age of an input from its header stamp, at least the time since it was received.

    ``now_s``/``received_s`` are on a monotonic clock (a source that stops makes the input age
    even when its clock stops too, e.g. a paused simulator); ``stamp_s``/``clock_now_s`` on the
    node's ROS clock (system or simulated time). A zero/None stamp means "unstamped": the age is
    the time since reception. A stamp in the future by up to ``skew_tolerance_s`` counts as
    fresh; further ahead, the clocks disagree and ``stamp_ahead_s`` says by how much (the caller
    must not trust the input).
    """
    age = max(0.0, now_s - received_s)
    if stamp_s is None or stamp_s == 0.0:
        return InputAge(age)
    stamp_age = clock_now_s - stamp_s
    if stamp_age < -skew_tolerance_s:
        return InputAge(age, stamp_ahead_s=-stamp_age)
    return InputAge(max(age, stamp_age))


@dataclass
class SafetyCounters:
    """Clamp/limit events since the node was configured: one count per control tick and kind."""

    linear_step_clamps: int = 0
    angular_step_clamps: int = 0
    gripper_clamps: int = 0
    linear_change_limits: int = 0
    angular_change_limits: int = 0
    workspace_clips: int = 0
    non_finite_commands: int = 0
    stop_events: int = 0  # entering a stop (source STOP) from a moving command
    last_event: str = ""


@dataclass(frozen=True)
class FilteredCommand:
    command: np.ndarray  # float64 [7]: what is sent
    stop: bool  # the command is a stop (zero motion)
    events: tuple[str, ...]  # what the filter changed, e.g. ("linear step clamped", "workspace clip (x > 0.6)")


@dataclass(frozen=True)
class CommandFilterConfig:
    limits: SafetyLimits = SafetyLimits()
    max_linear_change: float = 0.0  # [m per step per tick]; 0 = no limit
    max_angular_change: float = 0.0  # [rad per step per tick]; 0 = no limit
    workspace: WorkspaceBox | None = None  # None: no workspace check

    def __post_init__(self) -> None:
        for name in ("max_linear_change", "max_angular_change"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"CommandFilterConfig.{name} must be a finite number >= 0, got {value!r}")


class CommandFilter:
    """Every command on its way to the arm, tick by tick (stateful: the previous command).

    Order: :func:`make_safe` (finite, per-step norms, gripper range) -> the change limit against
    the previous command (:func:`limit_change`) -> the workspace box (:func:`clip_to_workspace`,
    a hard limit, last so nothing can push the arm out again). A stop is never rate limited: it is
    sent at once, and the next motion ramps up from standing still. Every event is counted in
    :attr:`counters`. Not thread-safe.
    """

    def __init__(self, config: CommandFilterConfig) -> None:
        self.config = config
        self.counters = SafetyCounters()
        self._previous = stop_command()
        self._stopped = True

    def reset(self) -> None:
        """Forget the previous command (e.g. after a deactivation): the next one ramps from rest."""
        self._previous = stop_command(float(self._previous[6]))
        self._stopped = True

    def apply(self, command: np.ndarray, hold_gripper: float, is_stop: bool,
              position: np.ndarray | None = None) -> FilteredCommand:
        """Filter one command. ``position`` is the current end-effector position [3] (required when
        a workspace is configured; the caller stops the arm when it has no fresh one)."""
        cfg, counters = self.config, self.counters
        safe = make_safe(command, cfg.limits, hold_gripper=hold_gripper)
        events = []

        def count(counter: str, text: str) -> None:
            setattr(counters, counter, getattr(counters, counter) + 1)
            events.append(text)

        for happened, counter, text in (
            (safe.non_finite, "non_finite_commands", "non-finite command replaced by stop"),
            (safe.linear_clamped, "linear_step_clamps", "linear step clamped"),
            (safe.angular_clamped, "angular_step_clamps", "angular step clamped"),
            (safe.gripper_clamped, "gripper_clamps", "gripper clamped"),
        ):
            if happened:
                count(counter, text)
        out = safe.command
        stop = is_stop or safe.non_finite
        if stop:
            out = stop_command(float(out[6]))
        else:
            out, lin, ang = limit_change(out, self._previous, cfg.max_linear_change, cfg.max_angular_change)
            if lin:
                count("linear_change_limits", "linear change limited")
            if ang:
                count("angular_change_limits", "angular change limited")
            if cfg.workspace is not None:
                if position is None:
                    raise ValueError("a workspace is configured: the end-effector position is required")
                out[0:3], clipped = clip_to_workspace(out[0:3], position, cfg.workspace)
                if clipped:
                    count("workspace_clips", f"workspace clip ({clipped})")
        if stop and not self._stopped:
            counters.stop_events += 1
        self._stopped = stop
        self._previous = out.copy()
        if events:
            counters.last_event = ", ".join(events)
        return FilteredCommand(out, stop, tuple(events))
