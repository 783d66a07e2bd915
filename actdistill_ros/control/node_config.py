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
from actdistill_ros.control.safety import CommandFilterConfig, SafetyLimits, WorkspaceBox

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ConfigError(ValueError):
    """The node's configuration is unusable; the message names the parameter and the problem."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    runtime: bool = False  # settable while running (otherwise read-only after start-up)
    # the range announced in the ParameterDescriptor (``ros2 param describe``), inclusive; None: none.
    # validate_config() checks the exact rules (e.g. > 0) and reports every problem at once.
    range: tuple[float, float] | None = None


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "", "student checkpoint directory ('' = the student shipped with the package)"),
    ParamSpec("device", "auto", "inference device: auto, cpu, cuda or cuda:N"),
    ParamSpec(
        "dtype", "auto", "inference dtype: auto, float32, float16, bfloat16 (half precision on CUDA only)"
    ),
    ParamSpec(
        "autostart", True,
        "configure and activate at start-up (false: stay unconfigured until `ros2 lifecycle set`)",
    ),
    ParamSpec("control_rate_hz", 10.0, "control loop rate: one command per tick [Hz]", range=(0.0, 1000.0)),
    ParamSpec("command_timing", "timer",
              "when commands go out: timer (every control tick) or prediction (also the moment a prediction is "
              "ready, the next tick then one period later: commands follow the camera)"),
    ParamSpec("execution", "eager",
              "how a decided route runs: eager, compile (torch.compile per route) or cuda_graphs (CUDA only)"),
    ParamSpec("latency_budget_ms", 0.0,
              "keep the p95 forward latency under this by lowering the layer cap online (0 = off) [ms]",
              range=(0.0, 1e6)),
    ParamSpec("image_timeout_s", 0.5, "stop when the newest image is older than this [s]", range=(0.0, 60.0)),
    ParamSpec("instruction_timeout_s", 300.0, "stop when the instruction is older than this [s]",
              range=(0.0, 1e9)),
    ParamSpec("teleop_timeout_s", 0.5, "teleop input older than this counts as absent [s]", range=(0.0, 60.0)),
    ParamSpec(
        "stamp_skew_tolerance_s", 0.1,
        "an input stamped up to this far in the future counts as fresh; further ahead, the clocks "
        "disagree and the input is not used (ages come from header stamps) [s]",
        range=(0.0, 60.0),
    ),
    ParamSpec("limits.max_linear_step", 0.02, "max norm of (dx, dy, dz) per control step [m]", range=(0.0, 10.0)),
    ParamSpec("limits.max_angular_step", 0.1, "max norm of (droll, dpitch, dyaw) per control step [rad]",
              range=(0.0, 10.0)),
    ParamSpec("limits.gripper_min", 0.0, "lowest gripper command [0 open .. 1 closed]", range=(0.0, 1.0)),
    ParamSpec("limits.gripper_max", 1.0, "highest gripper command [0 open .. 1 closed]", range=(0.0, 1.0)),
    ParamSpec(
        "limits.max_linear_change", 0.02,
        "max norm of the change of (dx, dy, dz) from one tick to the next (0 = no limit; stops are "
        "never limited) [m]",
        range=(0.0, 10.0),
    ),
    ParamSpec(
        "limits.max_angular_change", 0.1,
        "max norm of the change of (droll, dpitch, dyaw) from one tick to the next (0 = no limit) [rad]",
        range=(0.0, 10.0),
    ),
    ParamSpec(
        "workspace.enabled", False,
        "keep the end effector in the box workspace.min..max: needs `ee_pose`, stops without a fresh one",
    ),
    ParamSpec("workspace.min", [-1.0, -1.0, 0.0], "lower corner (x, y, z) of the workspace box, action frame [m]"),
    ParamSpec("workspace.max", [1.0, 1.0, 1.5], "upper corner (x, y, z) of the workspace box, action frame [m]"),
    ParamSpec("workspace.pose_timeout_s", 0.5, "with the workspace on: stop when `ee_pose` is older than this [s]",
              range=(0.0, 60.0)),
    ParamSpec("deadband", 0.02, "a teleop twist with norm above this overrides AUTONOMY [m/s, rad/s]",
              range=(0.0, 100.0)),
    ParamSpec(
        "gripper_deadband", 0.05,
        "a teleop gripper command changing the gripper by more than this overrides AUTONOMY [1]",
        range=(0.0, 1.0),
    ),
    ParamSpec("ramp_s", 1.0, "blend time from the human command to the policy on entering AUTONOMY [s]",
              range=(0.0, 60.0)),
    ParamSpec("temporal_ensemble", False, "average overlapping action chunks (ACT temporal ensembling)"),
    ParamSpec("ensemble_k", 0.01, "ensembling weight decay: weight exp(-k*i), i = 0 oldest prediction [1]",
              range=(-100.0, 100.0)),
    ParamSpec("max_layers", 0, "run at most this many decoder layers per pass (0 = no cap) [layers]", True,
              range=(0, 1024)),
    ParamSpec("threshold", 0.0, "router gate threshold in (0, 1) (0 = the checkpoint's) [1]", True, range=(0.0, 1.0)),
    ParamSpec("publish_servo_twist", False, "also publish servo/delta_twist_cmds and gripper_command"),
    ParamSpec("servo_frame_id", "base_link", "frame_id of the servo twist"),
    ParamSpec("servo_scale", 1.0, "factor applied to the servo twist velocities [1]", range=(0.0, 1000.0)),
    ParamSpec(
        "action_frame_id", "base_link",
        "frame_id of the published actions (the policy's action frame; `ee_pose` must be in it)",
    ),
    ParamSpec("initial_mode", "teleop", "mode at start-up: teleop, shadow or autonomy"),
    ParamSpec("warmup_iterations", 3, "forward passes when configuring, before serving (0 = none) [passes]",
              range=(0, 1000)),
    ParamSpec("diagnostics_rate_hz", 1.0, "rate of the DiagnosticArray on /diagnostics (0 = none) [Hz]",
              range=(0.0, 100.0)),
)
SPECS = {spec.name: spec for spec in PARAMS}


@dataclass(frozen=True)
class NodeConfig:
    checkpoint: str
    device: str
    dtype: str
    autostart: bool
    control_rate_hz: float
    command_timing: str
    execution: str
    latency_budget_ms: float
    image_timeout_s: float
    instruction_timeout_s: float
    teleop_timeout_s: float
    stamp_skew_tolerance_s: float
    limits: SafetyLimits
    max_linear_change: float
    max_angular_change: float
    workspace: WorkspaceBox | None  # None: workspace.enabled is false
    pose_timeout_s: float
    deadband: float
    gripper_deadband: float
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
    diagnostics_rate_hz: float

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def command_filter(self) -> CommandFilterConfig:
        return CommandFilterConfig(self.limits, self.max_linear_change, self.max_angular_change, self.workspace)


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


def as_xyz(name: str, value: Any, errors: list[str]) -> tuple[float, float, float]:
    values = list(value) if isinstance(value, list | tuple) or hasattr(value, "tolist") else None
    if values is None or len(values) != 3:
        errors.append(f"parameter '{name}' must be 3 numbers [x, y, z], got {value!r}")
        return (math.nan, math.nan, math.nan)
    n = len(errors)
    out = tuple(as_float(name, v, errors) for v in values)
    if len(errors) > n:  # one message for the list, not one per element
        del errors[n:]
        errors.append(f"parameter '{name}' must be 3 finite numbers [x, y, z], got {value!r}")
    return out  # type: ignore[return-value]


FLOAT_PARAMS = tuple(s.name for s in PARAMS if isinstance(s.default, float))
INT_PARAMS = tuple(s.name for s in PARAMS if isinstance(s.default, int) and not isinstance(s.default, bool))
POSITIVE = ("control_rate_hz", "image_timeout_s", "instruction_timeout_s", "teleop_timeout_s", "servo_scale",
            "workspace.pose_timeout_s")
COMMAND_TIMINGS = ("timer", "prediction")
EXECUTIONS = ("eager", "compile", "cuda_graphs")
NON_NEGATIVE = ("latency_budget_ms", "limits.max_linear_step", "limits.max_angular_step", "limits.gripper_min",
                "limits.gripper_max",
                "limits.max_linear_change", "limits.max_angular_change", "deadband", "gripper_deadband", "ramp_s",
                "threshold", "stamp_skew_tolerance_s", "diagnostics_rate_hz", "max_layers", "warmup_iterations")


def validate_config(values: dict[str, Any]) -> NodeConfig:
    """Turn raw parameter values into a :class:`NodeConfig`; ``ConfigError`` lists every problem."""
    errors: list[str] = []
    f = {n: as_float(n, values[n], errors) for n in FLOAT_PARAMS}
    i = {n: as_int(n, values[n], errors) for n in INT_PARAMS}
    num = {**f, **i}
    for name in POSITIVE:
        if num[name] <= 0:  # also catches NaN via the finite check above
            errors.append(f"parameter '{name}' must be > 0, got {values[name]!r}")
    for name in NON_NEGATIVE:
        if num[name] < 0:
            errors.append(f"parameter '{name}' must be >= 0, got {values[name]!r}")
    if f["threshold"] >= 1.0:
        errors.append(
            f"parameter 'threshold' must be in (0, 1) or 0 (checkpoint default), got {values['threshold']!r}"
        )
    if f["gripper_deadband"] > 1.0:
        errors.append(f"parameter 'gripper_deadband' must be <= 1, got {values['gripper_deadband']!r}")
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
    timing = str(values["command_timing"]).strip().lower()
    if timing not in COMMAND_TIMINGS:
        errors.append(f"parameter 'command_timing': {values['command_timing']!r} is not one of "
                      + ", ".join(COMMAND_TIMINGS))
    execution = str(values["execution"]).strip().lower()
    if execution not in EXECUTIONS:
        errors.append(f"parameter 'execution': {values['execution']!r} is not one of " + ", ".join(EXECUTIONS))
    try:
        mode = Mode.parse(values["initial_mode"])
    except ValueError as exc:
        errors.append(f"parameter 'initial_mode': {exc}")
        mode = Mode.TELEOP
    workspace = None
    box = (as_xyz("workspace.min", values["workspace.min"], errors),
           as_xyz("workspace.max", values["workspace.max"], errors))
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
        if bool(values["workspace.enabled"]):
            try:
                workspace = WorkspaceBox(*box)
            except ValueError as exc:
                errors.append(f"parameters 'workspace.min'/'workspace.max': {exc}")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    return NodeConfig(
        checkpoint=str(values["checkpoint"]).strip(),
        device=device,
        dtype=dtype,
        autostart=bool(values["autostart"]),
        control_rate_hz=f["control_rate_hz"],
        command_timing=timing,
        execution=execution,
        latency_budget_ms=f["latency_budget_ms"],
        image_timeout_s=f["image_timeout_s"],
        instruction_timeout_s=f["instruction_timeout_s"],
        teleop_timeout_s=f["teleop_timeout_s"],
        stamp_skew_tolerance_s=f["stamp_skew_tolerance_s"],
        limits=limits,
        max_linear_change=f["limits.max_linear_change"],
        max_angular_change=f["limits.max_angular_change"],
        workspace=workspace,
        pose_timeout_s=f["workspace.pose_timeout_s"],
        deadband=f["deadband"],
        gripper_deadband=f["gripper_deadband"],
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
        diagnostics_rate_hz=f["diagnostics_rate_hz"],
    )


def resolve_budget(max_layers: Any, threshold: Any, layers_total: int, default_threshold: float | None,
                   routed: bool) -> tuple[int | None, float | None]:
    """Check a compute budget against the loaded policy without touching it (no lock needed):
    ``(cap, threshold)`` for ``set_budget`` (None = no cap / keep the checkpoint's), or ValueError
    naming the parameter. ``max_layers`` 0 = no cap; ``threshold`` 0 = the checkpoint's."""
    errors: list[str] = []
    ml = as_int("max_layers", max_layers, errors)
    thr = as_float("threshold", threshold, errors)
    if errors:
        raise ValueError("; ".join(errors))
    if ml < 0:
        raise ValueError(f"parameter 'max_layers' must be >= 0 (0 = no cap), got {max_layers!r}")
    cap = None if ml == 0 else ml
    if cap is not None and not routed and cap < layers_total:
        raise ValueError("parameter 'max_layers': a teacher checkpoint has no router, it always runs every layer "
                         "(max_layers must be 0)")
    if cap is not None and routed and cap > layers_total:
        raise ValueError(f"parameter 'max_layers' must be in [0, {layers_total}] (0 = no cap) for this "
                         f"checkpoint, got {max_layers!r}")
    if thr == 0.0:
        return cap, default_threshold
    if not 0.0 < thr < 1.0:
        raise ValueError(f"parameter 'threshold' must be in (0, 1) or 0 (checkpoint default), got {threshold!r}")
    return cap, thr
