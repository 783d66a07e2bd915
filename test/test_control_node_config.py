"""The policy node's parameter table and start-up validation (ROS-free), and config/policy.yaml."""

import math
from pathlib import Path

import pytest
import yaml

from actdistill_ros.control.handoff import Mode
from actdistill_ros.control.node_config import (
    PARAMS,
    SPECS,
    ConfigError,
    PolicyParameters,
    check_parameter,
    resolve_budget,
    validate_config,
)

REPO = Path(__file__).resolve().parent.parent


def defaults(**overrides):
    values = {spec.name: spec.default for spec in PARAMS}
    values.update(overrides)
    return values


def flatten(d, prefix=""):
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_defaults_are_valid():
    cfg = validate_config(defaults())
    assert cfg.control_rate_hz == 10.0 and math.isclose(cfg.period_s, 0.1)
    assert cfg.initial_mode is Mode.TELEOP
    assert cfg.limits.max_linear_step == 0.02 and cfg.limits.gripper_max == 1.0
    assert cfg.max_layers == 0 and cfg.threshold == 0.0


def test_yaml_matches_parameter_table():
    data = yaml.safe_load((REPO / "config" / "policy.yaml").read_text())
    params = flatten(data["/**"]["ros__parameters"])
    assert set(params) == set(SPECS)
    for name, value in params.items():
        assert value == SPECS[name].default, name
        assert type(value) is type(SPECS[name].default), name  # 10.0 not 10: typed parameters
    validate_config(params)


def test_every_parameter_commented_in_yaml():
    lines = (REPO / "config" / "policy.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and ":" in stripped and not stripped.endswith(":"):
            # the line above a parameter is a comment (the gripper pair shares one)
            assert lines[i - 1].strip().startswith("#") or "gripper_max" in stripped, line


def test_ints_accepted_for_floats():
    cfg = validate_config(defaults(control_rate_hz=20, ramp_s=0))
    assert cfg.control_rate_hz == 20.0 and isinstance(cfg.control_rate_hz, float)
    assert validate_config(defaults(max_layers=3.0)).max_layers == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"device": "cuda:x"}, "unknown device"),
        ({"dtype": "int8"}, "unknown dtype 'int8'"),
        ({"control_rate_hz": 0.0}, "'control_rate_hz' must be > 0"),
        ({"control_rate_hz": -5.0}, "'control_rate_hz' must be > 0"),
        ({"image_timeout_s": 0.0}, "'image_timeout_s' must be > 0"),
        ({"teleop_timeout_s": -1.0}, "'teleop_timeout_s' must be > 0"),
        ({"instruction_timeout_s": math.nan}, "'instruction_timeout_s' must be finite"),
        ({"limits.max_linear_step": -0.01}, "'limits.max_linear_step' must be >= 0"),
        ({"limits.gripper_min": 0.9, "limits.gripper_max": 0.1}, "gripper_min (0.9) must be <= gripper_max"),
        ({"deadband": -0.1}, "'deadband' must be >= 0"),
        ({"max_layers": -1}, "'max_layers' must be >= 0"),
        ({"max_layers": 1.5}, "'max_layers' must be an integer"),
        ({"threshold": 1.0}, "'threshold' must be in (0, 1)"),
        ({"servo_scale": 0.0}, "'servo_scale' must be > 0"),
        ({"initial_mode": "auto"}, "unknown mode 'auto'"),
        ({"control_rate_hz": "fast"}, "'control_rate_hz' must be a number"),
        ({"warmup_iterations": True}, "'warmup_iterations' must be an integer"),
        ({"stamp_skew_tolerance_s": -0.1}, "'stamp_skew_tolerance_s' must be >= 0"),
        ({"limits.max_linear_change": -1.0}, "'limits.max_linear_change' must be >= 0"),
        ({"gripper_deadband": 1.5}, "'gripper_deadband' must be <= 1"),
        ({"workspace.pose_timeout_s": 0.0}, "'workspace.pose_timeout_s' must be > 0"),
        ({"workspace.min": [0.0, 0.0]}, "'workspace.min' must be 3 numbers"),
        ({"workspace.max": [0.0, "a", 1.0]}, "'workspace.max' must be 3 finite numbers"),
        ({"workspace.enabled": True, "workspace.min": [0.0, 0.0, 1.0], "workspace.max": [1.0, 1.0, 1.0]},
         "min must be < max on every axis (z is not)"),
        ({"diagnostics_rate_hz": -1.0}, "'diagnostics_rate_hz' must be >= 0"),
        ({"threshold": -0.5}, "'threshold' must be in (0, 1) or 0 (checkpoint default), got -0.5"),
        ({"control_rate_hz": 2000.0}, "'control_rate_hz' must be <= 1000, got 2000.0"),  # the announced range
        ({"max_layers": 2000}, "'max_layers' must be <= 1024, got 2000"),
        ({"command_timing": "often"}, "parameter 'command_timing': 'often' is not one of timer, prediction"),
        ({"executor": "multi"}, "parameter 'executor': 'multi' is not one of single_threaded, events"),
    ],
)
def test_invalid_values(overrides, message):
    with pytest.raises(ConfigError) as info:
        validate_config(defaults(**overrides))
    assert message in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as info:
        validate_config(defaults(device="tpu", control_rate_hz=-1.0, ramp_s=-2.0))
    text = str(info.value)
    assert "device" in text and "control_rate_hz" in text and "ramp_s" in text


def test_runtime_parameters_are_the_budget_only():
    assert {s.name for s in PARAMS if s.runtime} == {"max_layers", "threshold"}


def test_workspace_and_filter_config():
    cfg = validate_config(defaults())
    assert cfg.workspace is None and cfg.autostart is True  # box off by default: no ee_pose needed
    cfg = validate_config(defaults(**{"workspace.enabled": True, "workspace.min": [-0.3, -0.4, 0],
                                      "workspace.max": [0.3, 0.4, 0.6]}))
    assert cfg.workspace.min_xyz == (-0.3, -0.4, 0.0) and cfg.workspace.max_xyz == (0.3, 0.4, 0.6)
    f = cfg.command_filter
    assert f.workspace is cfg.workspace and f.max_linear_change == 0.02 and f.limits is cfg.limits


def test_parameters_are_generated_from_the_fields():
    """The declared parameters (names, defaults, descriptions, ranges) are PolicyParameters' fields."""
    fields = PolicyParameters.__pydantic_fields__
    assert [s.name for s in PARAMS][:5] == ["checkpoint", "device", "dtype", "autostart", "control_rate_hz"]
    assert SPECS["control_rate_hz"].range == (0.0, 1000.0)  # gt=0, le=1000
    assert SPECS["control_rate_hz"].description == fields["control_rate_hz"].description
    assert SPECS["limits.gripper_max"].range == (0.0, 1.0) and SPECS["limits.gripper_max"].default == 1.0
    assert SPECS["workspace.min"].default == [-1.0, -1.0, 0.0]  # a list, as ROS declares it
    assert SPECS["device"].range is None and all(spec.description for spec in PARAMS)
    assert check_parameter("max_layers", 3.0) == 3
    with pytest.raises(ValueError, match=r"^parameter 'max_layers' must be an integer, got True$"):
        check_parameter("max_layers", True)


def test_every_numeric_parameter_announces_a_range_containing_its_default():
    for spec in PARAMS:
        if isinstance(spec.default, int | float) and not isinstance(spec.default, bool):
            assert spec.range is not None, spec.name
            assert spec.range[0] <= spec.default <= spec.range[1], spec.name


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0, 0.0, 6, 0.5, True), (None, 0.5)),  # no cap, the checkpoint's threshold
        ((3, 0.3, 6, 0.5, True), (3, 0.3)),
        ((6, 0.0, 6, None, False), (6, None)),  # a teacher runs every layer
        ((0, 0.0, 6, None, False), (None, None)),
    ],
)
def test_resolve_budget(args, expected):
    assert resolve_budget(*args) == expected


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((7, 0.0, 6, 0.5, True), r"'max_layers' must be in \[0, 6\]"),
        ((-1, 0.0, 6, 0.5, True), "'max_layers' must be >= 0"),
        ((2, 0.0, 6, None, False), "teacher checkpoint has no router"),
        ((0, 1.5, 6, 0.5, True), r"'threshold' must be in \(0, 1\)"),
        (("x", 0.0, 6, 0.5, True), "'max_layers' must be an integer"),
    ],
)
def test_resolve_budget_rejects(args, match):
    with pytest.raises(ValueError, match=match):
        resolve_budget(*args)
