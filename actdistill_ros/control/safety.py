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
