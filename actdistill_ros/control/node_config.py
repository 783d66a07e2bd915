"""The policy node's parameters as plain data: names, defaults, descriptions, validation.

ROS-free, so the configuration rules are testable without rclpy; the node declares exactly
these parameters and turns their values into a :class:`NodeConfig` with
:func:`validate_config`, which reports *every* problem at once in a :class:`ConfigError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from actdistill_ros.control.handoff import Mode
from actdistill_ros.control.safety import SafetyLimits

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ConfigError(ValueError):
    """The node's configuration is unusable; the message names the parameter and the problem."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    runtime: bool = False  # settable while running (otherwise read-only after start-up)


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "", "student checkpoint directory ('' = the student shipped with the package)"),
    ParamSpec("device", "auto", "inference device: auto, cpu, cuda or cuda:N"),
    ParamSpec(
        "dtype", "auto", "inference dtype: auto, float32, float16, bfloat16 (half precision on CUDA only)"
    ),
    ParamSpec("control_rate_hz", 10.0, "control loop rate: one command per tick [Hz]"),
    ParamSpec("image_timeout_s", 0.5, "stop when the newest image is older than this [s]"),
    ParamSpec("instruction_timeout_s", 300.0, "stop when the instruction is older than this [s]"),
    ParamSpec("teleop_timeout_s", 0.5, "teleop input older than this counts as absent [s]"),
    ParamSpec("limits.max_linear_step", 0.02, "max norm of (dx, dy, dz) per control step [m]"),
    ParamSpec("limits.max_angular_step", 0.1, "max norm of (droll, dpitch, dyaw) per control step [rad]"),
    ParamSpec("limits.gripper_min", 0.0, "lowest gripper command [0 open .. 1 closed]"),
    ParamSpec("limits.gripper_max", 1.0, "highest gripper command [0 open .. 1 closed]"),
    ParamSpec("deadband", 0.02, "a teleop twist with norm above this overrides AUTONOMY [m/s, rad/s]"),
    ParamSpec("ramp_s", 1.0, "blend time from the human command to the policy on entering AUTONOMY [s]"),
    ParamSpec("temporal_ensemble", False, "average overlapping action chunks (ACT temporal ensembling)"),
    ParamSpec("ensemble_k", 0.01, "ensembling weight decay: weight exp(-k*i), i = 0 oldest prediction [1]"),
    ParamSpec("max_layers", 0, "run at most this many decoder layers per pass (0 = no cap) [layers]", True),
    ParamSpec("threshold", 0.0, "router gate threshold in (0, 1) (0 = the checkpoint's) [1]", True),
    ParamSpec("publish_servo_twist", False, "also publish servo/delta_twist_cmds and gripper_command"),
    ParamSpec("servo_frame_id", "base_link", "frame_id of the servo twist"),
    ParamSpec("servo_scale", 1.0, "factor applied to the servo twist velocities [1]"),
    ParamSpec(
        "action_frame_id", "base_link", "frame_id of the published actions (the policy's action frame)"
    ),
    ParamSpec("initial_mode", "teleop", "mode at start-up: teleop, shadow or autonomy"),
    ParamSpec("warmup_iterations", 3, "forward passes at start-up before serving (0 = none) [passes]"),
)
SPECS = {spec.name: spec for spec in PARAMS}


@dataclass(frozen=True)
class NodeConfig:
    checkpoint: str
    device: str
    dtype: str
    control_rate_hz: float
    image_timeout_s: float
    instruction_timeout_s: float
    teleop_timeout_s: float
    limits: SafetyLimits
    deadband: float
    ramp_s: float
    temporal_ensemble: bool
    ensemble_k: float
    max_layers: int
    threshold: float
    publish_servo_twist: bool
    servo_frame_id: str
    servo_scale: float
    action_frame_id: str
    initial_mode: Mode
    warmup_iterations: int

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz


def as_float(name: str, value: Any, errors: list[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(f"parameter '{name}' must be a number, got {value!r}")
        return math.nan
    if not math.isfinite(value):
        errors.append(f"parameter '{name}' must be finite, got {value!r}")
    return float(value)


def as_int(name: str, value: Any, errors: list[str]) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(f"parameter '{name}' must be an integer, got {value!r}")
        return 0
    return int(value)


def validate_config(values: dict[str, Any]) -> NodeConfig:
    """Turn raw parameter values into a :class:`NodeConfig`; ``ConfigError`` lists every problem."""
    errors: list[str] = []
    f = {
        n: as_float(n, values[n], errors)
        for n in (
            "control_rate_hz",
            "image_timeout_s",
            "instruction_timeout_s",
            "teleop_timeout_s",
            "limits.max_linear_step",
            "limits.max_angular_step",
            "limits.gripper_min",
            "limits.gripper_max",
            "deadband",
            "ramp_s",
            "ensemble_k",
            "threshold",
            "servo_scale",
        )
    }
    i = {n: as_int(n, values[n], errors) for n in ("max_layers", "warmup_iterations")}
    for name in (
        "control_rate_hz",
        "image_timeout_s",
        "instruction_timeout_s",
        "teleop_timeout_s",
        "servo_scale",
    ):
        if f[name] <= 0:  # also catches NaN via the finite check above
            errors.append(f"parameter '{name}' must be > 0, got {values[name]!r}")
    for name in (
        "limits.max_linear_step",
        "limits.max_angular_step",
        "limits.gripper_min",
        "limits.gripper_max",
        "deadband",
        "ramp_s",
        "threshold",
    ):
        if f[name] < 0:
            errors.append(f"parameter '{name}' must be >= 0, got {values[name]!r}")
    for name in ("max_layers", "warmup_iterations"):
        if i[name] < 0:
            errors.append(f"parameter '{name}' must be >= 0, got {values[name]!r}")
    if f["threshold"] >= 1.0:
        errors.append(
            f"parameter 'threshold' must be in (0, 1) or 0 (checkpoint default), got {values['threshold']!r}"
        )
    device = str(values["device"]).strip().lower()
    if not _DEVICE_RE.match(device):
        errors.append(
            f"parameter 'device': unknown device {values['device']!r} (use auto, cpu, cuda or cuda:N)"
        )
    dtype = str(values["dtype"]).strip().lower()
    if dtype not in ("auto", "float32", "float16", "bfloat16"):
        errors.append(
            f"parameter 'dtype': unknown dtype {values['dtype']!r} (use auto, float32, float16 or bfloat16)"
        )
    try:
        mode = Mode.parse(values["initial_mode"])
    except ValueError as exc:
        errors.append(f"parameter 'initial_mode': {exc}")
        mode = Mode.TELEOP
    limits = None
    if not errors:
        try:
            limits = SafetyLimits(
                max_linear_step=f["limits.max_linear_step"],
                max_angular_step=f["limits.max_angular_step"],
                gripper_min=f["limits.gripper_min"],
                gripper_max=f["limits.gripper_max"],
            )
        except ValueError as exc:
            errors.append(f"parameters 'limits.*': {exc}")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    return NodeConfig(
        checkpoint=str(values["checkpoint"]).strip(),
        device=device,
        dtype=dtype,
        control_rate_hz=f["control_rate_hz"],
        image_timeout_s=f["image_timeout_s"],
        instruction_timeout_s=f["instruction_timeout_s"],
        teleop_timeout_s=f["teleop_timeout_s"],
        limits=limits,
        deadband=f["deadband"],
        ramp_s=f["ramp_s"],
        temporal_ensemble=bool(values["temporal_ensemble"]),
        ensemble_k=f["ensemble_k"],
        max_layers=i["max_layers"],
        threshold=f["threshold"],
        publish_servo_twist=bool(values["publish_servo_twist"]),
        servo_frame_id=str(values["servo_frame_id"]),
        servo_scale=f["servo_scale"],
        action_frame_id=str(values["action_frame_id"]),
        initial_mode=mode,
        warmup_iterations=i["warmup_iterations"],
    )
