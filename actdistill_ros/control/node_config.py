"""The policy node's parameters as typed fields: names, defaults, descriptions, ranges, validation.

One pydantic dataclass (:class:`PolicyParameters`, nested ``limits.*`` and ``workspace.*``) is
the single source: :data:`PARAMS` (what the node declares, with the description and the range
of each field's ``Field(...)`` in its ParameterDescriptor, and the README table) is generated
from it, and :func:`validate_config` validates the declared values with it. ROS-free, so the
rules are testable without rclpy. A field's bounds are both what ``ros2 param describe``
announces and what is enforced; :func:`validate_config` reports *every* problem at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from actdistill_ros.control.handoff import Mode
from actdistill_ros.control.safety import CommandFilterConfig, SafetyLimits, WorkspaceBox
from actdistill_ros.core.typed_config import ConfigError, Float, Int, field_range, problems, unflatten

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
COMMAND_TIMINGS = ("timer", "prediction")
EXECUTIONS = ("eager", "compile", "cuda_graphs")
EXECUTORS = ("single_threaded", "events")
DTYPES = ("auto", "float32", "float16", "bfloat16")


# Parameters come from ROS (typed, finite unless someone writes .nan): a NaN is an error here.
_parameters = pydantic_dataclass(config=ConfigDict(extra="forbid", allow_inf_nan=False))


def _device(value: str) -> str:
    device = value.strip().lower()
    if not _DEVICE_RE.match(device):
        raise ValueError(f"unknown device {value!r} (use auto, cpu, cuda or cuda:N)")
    return device


def _dtype(value: str) -> str:
    if value.strip().lower() not in DTYPES:
        raise ValueError(f"unknown dtype {value!r} (use auto, float32, float16 or bfloat16)")
    return value.strip().lower()


def _one_of(choices: tuple[str, ...]):
    def check(value: str) -> str:
        if value.strip().lower() not in choices:
            raise ValueError(f"{value!r} is not one of " + ", ".join(choices))
        return value.strip().lower()
    return AfterValidator(check)


def _mode(value: Any) -> str:
    return Mode.parse(value).name.lower()  # ValueError names the valid modes


def _threshold(value: Any) -> Any:
    """0 (the checkpoint's) or a gate threshold strictly inside (0, 1)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and not (value == 0 or 0 < value < 1):
        raise ValueError(f"must be in (0, 1) or 0 (checkpoint default), got {value!r}")
    return value


def _xyz(value: Any) -> tuple[float, float, float]:
    values = list(value) if isinstance(value, list | tuple) or hasattr(value, "tolist") else None
    if values is None or len(values) != 3:
        raise ValueError(f"must be 3 numbers [x, y, z], got {value!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError(f"must be 3 finite numbers [x, y, z], got {value!r}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


XYZ = Annotated[tuple[float, float, float], BeforeValidator(_xyz)]
RUNTIME = {"runtime": True}  # settable while running (every other parameter is read-only after start-up)


@_parameters
class LimitsParameters:
    max_linear_step: Float = Field(0.02, ge=0.0, le=10.0, description="max norm of (dx, dy, dz) per control step [m]")
    max_angular_step: Float = Field(0.1, ge=0.0, le=10.0,
                                    description="max norm of (droll, dpitch, dyaw) per control step [rad]")
    gripper_min: Float = Field(0.0, ge=0.0, le=1.0, description="lowest gripper command [0 open .. 1 closed]")
    gripper_max: Float = Field(1.0, ge=0.0, le=1.0, description="highest gripper command [0 open .. 1 closed]")
    max_linear_change: Float = Field(0.02, ge=0.0, le=10.0, description=(
        "max norm of the change of (dx, dy, dz) from one tick to the next (0 = no limit; stops are never "
        "limited) [m]"))
    max_angular_change: Float = Field(0.1, ge=0.0, le=10.0, description=(
        "max norm of the change of (droll, dpitch, dyaw) from one tick to the next (0 = no limit) [rad]"))


@_parameters
class WorkspaceParameters:
    enabled: bool = Field(False, description=(
        "keep the end effector in the box workspace.min..max: needs `ee_pose`, stops without a fresh one"))
    min: XYZ = Field((-1.0, -1.0, 0.0), description="lower corner (x, y, z) of the workspace box, action frame [m]")
    max: XYZ = Field((1.0, 1.0, 1.5), description="upper corner (x, y, z) of the workspace box, action frame [m]")
    pose_timeout_s: Float = Field(0.5, gt=0.0, le=60.0,
                                  description="with the workspace on: stop when `ee_pose` is older than this [s]")


@_parameters
class PolicyParameters:
    checkpoint: str = Field("", description="student checkpoint directory ('' = the student shipped with the package)")
    device: Annotated[str, AfterValidator(_device)] = Field(
        "auto", description="inference device: auto, cpu, cuda or cuda:N")
    dtype: Annotated[str, AfterValidator(_dtype)] = Field(
        "auto", description="inference dtype: auto, float32, float16, bfloat16 (half precision on CUDA only)")
    autostart: bool = Field(True, description=(
        "configure and activate at start-up (false: stay unconfigured until `ros2 lifecycle set`)"))
    control_rate_hz: Float = Field(10.0, gt=0.0, le=1000.0, description="control loop rate: one command per tick [Hz]")
    command_timing: Annotated[str, _one_of(COMMAND_TIMINGS)] = Field("timer", description=(
        "when commands go out: timer (every control tick) or prediction (also the moment a prediction is "
        "ready, the next tick then one period later: commands follow the camera)"))
    execution: Annotated[str, _one_of(EXECUTIONS)] = Field("eager", description=(
        "how a decided route runs: eager, compile (torch.compile per route) or cuda_graphs (CUDA only)"))
    latency_budget_ms: Float = Field(0.0, ge=0.0, le=1e6, description=(
        "keep the p95 forward latency under this by lowering the layer cap online (0 = off) [ms]"))
    inference_priority: Int = Field(0, ge=0, le=99, description=(
        "real-time priority (SCHED_FIFO, 1-99) of the inference thread, so that other processes cannot delay a "
        "forward pass (Linux; needs CAP_SYS_NICE or an rtprio limit); 0 = normal scheduling"))
    executor: Annotated[str, _one_of(EXECUTORS)] = Field("single_threaded", description=(
        "what runs the callbacks: single_threaded (rclpy's executor, in Python) or events "
        "(rclpy.experimental.EventsExecutor, in C++: a fraction of the Python, and of the GIL the forward pass "
        "waits for, per callback; ROS 2 Kilted or newer)"))
    image_timeout_s: Float = Field(0.5, gt=0.0, le=60.0,
                                   description="stop when the newest image is older than this [s]")
    instruction_timeout_s: Float = Field(300.0, gt=0.0, le=1e9,
                                         description="stop when the instruction is older than this [s]")
    teleop_timeout_s: Float = Field(0.5, gt=0.0, le=60.0,
                                    description="teleop input older than this counts as absent [s]")
    stamp_skew_tolerance_s: Float = Field(0.1, ge=0.0, le=60.0, description=(
        "an input stamped up to this far in the future counts as fresh; further ahead, the clocks disagree and "
        "the input is not used (ages come from header stamps) [s]"))
    limits: LimitsParameters = Field(default_factory=LimitsParameters)
    workspace: WorkspaceParameters = Field(default_factory=WorkspaceParameters)
    deadband: Float = Field(0.02, ge=0.0, le=100.0,
                            description="a teleop twist with norm above this overrides AUTONOMY [m/s, rad/s]")
    gripper_deadband: Float = Field(0.05, ge=0.0, le=1.0, description=(
        "a teleop gripper command changing the gripper by more than this overrides AUTONOMY [1]"))
    ramp_s: Float = Field(1.0, ge=0.0, le=60.0,
                          description="blend time from the human command to the policy on entering AUTONOMY [s]")
    temporal_ensemble: bool = Field(False, description="average overlapping action chunks (ACT temporal ensembling)")
    ensemble_k: Float = Field(0.01, ge=-100.0, le=100.0,
                              description="ensembling weight decay: weight exp(-k*i), i = 0 oldest prediction [1]")
    max_layers: Int = Field(0, ge=0, le=1024, json_schema_extra=RUNTIME,
                            description="run at most this many decoder layers per pass (0 = no cap) [layers]")
    threshold: Annotated[Float, BeforeValidator(_threshold)] = Field(
        0.0, ge=0.0, le=1.0, json_schema_extra=RUNTIME,
        description="router gate threshold in (0, 1) (0 = the checkpoint's) [1]")
    publish_servo_twist: bool = Field(False, description="also publish servo/delta_twist_cmds and gripper_command")
    servo_frame_id: str = Field("base_link", description="frame_id of the servo twist")
    servo_scale: Float = Field(1.0, gt=0.0, le=1000.0, description="factor applied to the servo twist velocities [1]")
    action_frame_id: str = Field("base_link", description=(
        "frame_id of the published actions (the policy's action frame; `ee_pose` must be in it)"))
    initial_mode: Annotated[str, AfterValidator(_mode)] = Field(
        "teleop", description="mode at start-up: teleop, shadow or autonomy")
    warmup_iterations: Int = Field(3, ge=0, le=1000,
                                   description="forward passes when configuring, before serving (0 = none) [passes]")
    diagnostics_rate_hz: Float = Field(1.0, ge=0.0, le=100.0,
                                       description="rate of the DiagnosticArray on /diagnostics (0 = none) [Hz]")


@dataclass(frozen=True)
class ParamSpec:
    """One declared ROS parameter, generated from a field of :class:`PolicyParameters`."""

    name: str
    default: Any  # a list for a tuple field (what ROS declares)
    description: str
    runtime: bool = False  # settable while running (otherwise read-only after start-up)
    range: tuple[float, float] | None = None  # the field's bounds, inclusive; announced in the ParameterDescriptor


def _specs(cls: type, prefix: str = "") -> list[ParamSpec]:
    hints = typing.get_type_hints(cls)
    out: list[ParamSpec] = []
    for name, info in cls.__pydantic_fields__.items():
        if dataclasses.is_dataclass(hints[name]):
            out += _specs(hints[name], f"{prefix}{name}.")
            continue
        default = info.get_default(call_default_factory=True)
        out.append(ParamSpec(f"{prefix}{name}", list(default) if isinstance(default, tuple) else default,
                             info.description or "", bool((info.json_schema_extra or {}).get("runtime")),
                             field_range(info)))
    return out


PARAMS: tuple[ParamSpec, ...] = tuple(_specs(PolicyParameters))
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
    inference_priority: int
    executor: str
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


def _parameter_problems(exc: ValidationError, cls: type, prefix: str = "") -> list[str]:
    return [f"parameter '{key}' {text}" if text.startswith("must") else f"parameter '{key}': {text}"
            for key, text in problems(exc, cls, prefix)]


def validate_config(values: dict[str, Any]) -> NodeConfig:
    """Turn the declared parameters' values (dotted names) into a :class:`NodeConfig`;
    ``ConfigError`` lists every problem."""
    try:
        p = TypeAdapter(PolicyParameters).validate_python(unflatten(values))
    except ValidationError as exc:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_parameter_problems(exc, PolicyParameters))) \
            from None
    errors: list[str] = []
    limits = workspace = None
    try:
        limits = SafetyLimits(p.limits.max_linear_step, p.limits.max_angular_step, p.limits.gripper_min,
                              p.limits.gripper_max)
    except ValueError as exc:
        errors.append(f"parameters 'limits.*': {exc}")
    if p.workspace.enabled:
        try:
            workspace = WorkspaceBox(p.workspace.min, p.workspace.max)
        except ValueError as exc:
            errors.append(f"parameters 'workspace.min'/'workspace.max': {exc}")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    plain = {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name not in ("limits", "workspace")}
    plain.update(checkpoint=p.checkpoint.strip(), initial_mode=Mode.parse(p.initial_mode))
    return NodeConfig(**plain, limits=limits, max_linear_change=p.limits.max_linear_change,
                      max_angular_change=p.limits.max_angular_change, workspace=workspace,
                      pose_timeout_s=p.workspace.pose_timeout_s)


@functools.cache
def _field_adapter(name: str) -> tuple[type, TypeAdapter]:
    info = PolicyParameters.__pydantic_fields__[name]
    return PolicyParameters, TypeAdapter(Annotated[(info.annotation, *info.metadata)])


def check_parameter(name: str, value: Any) -> Any:
    """One top-level parameter's value checked by its field (types, bounds); ValueError names it."""
    cls, adapter = _field_adapter(name)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise ValueError("; ".join(_parameter_problems(exc, cls, name))) from None


def resolve_budget(max_layers: Any, threshold: Any, layers_total: int, default_threshold: float | None,
                   routed: bool) -> tuple[int | None, float | None]:
    """Check a compute budget against the loaded policy without touching it (no lock needed):
    ``(cap, threshold)`` for ``set_budget`` (None = no cap / keep the checkpoint's), or ValueError
    naming the parameter. ``max_layers`` 0 = no cap; ``threshold`` 0 = the checkpoint's."""
    ml = check_parameter("max_layers", max_layers)
    thr = check_parameter("threshold", threshold)
    cap = None if ml == 0 else ml
    if cap is not None and not routed and cap < layers_total:
        raise ValueError("parameter 'max_layers': a teacher checkpoint has no router, it always runs every layer "
                         "(max_layers must be 0)")
    if cap is not None and routed and cap > layers_total:
        raise ValueError(f"parameter 'max_layers' must be in [0, {layers_total}] (0 = no cap) for this "
                         f"checkpoint, got {max_layers!r}")
    return cap, (default_threshold if thr == 0.0 else thr)
