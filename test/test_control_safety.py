"""Safety filter: every command leaves finite and within the limits."""

import math

import numpy as np
import pytest

from actdistill_ros.control.safety import SafetyLimits, make_safe, stop_command

LIM = SafetyLimits(max_linear_step=0.01, max_angular_step=0.05, gripper_min=0.0, gripper_max=1.0)


def test_within_limits_passes_unchanged():
    cmd = np.array([0.003, -0.004, 0.0, 0.01, 0.02, -0.02, 0.5])
    out = make_safe(cmd, LIM)
    np.testing.assert_array_equal(out.command, cmd)
    assert not out.modified
    assert out.describe() == ""


def test_linear_clamped_by_norm_keeping_direction():
    # |(0.03, 0.04, 0)| = 0.05 > 0.01 -> scaled by 0.2 -> (0.006, 0.008, 0)
    out = make_safe([0.03, 0.04, 0.0, 0.0, 0.0, 0.0, 0.2], LIM)
    np.testing.assert_allclose(out.command, [0.006, 0.008, 0.0, 0.0, 0.0, 0.0, 0.2], atol=1e-12)
    assert out.linear_clamped and not out.angular_clamped and not out.gripper_clamped
    assert math.isclose(float(np.linalg.norm(out.command[:3])), 0.01)


def test_angular_clamped_by_norm_keeping_direction():
    # |(0, 0.3, -0.4)| = 0.5 > 0.05 -> scaled by 0.1 -> (0, 0.03, -0.04)
    out = make_safe([0.0, 0.0, 0.0, 0.0, 0.3, -0.4, 1.0], LIM)
    np.testing.assert_allclose(out.command, [0, 0, 0, 0.0, 0.03, -0.04, 1.0], atol=1e-12)
    assert out.angular_clamped and not out.linear_clamped
    assert "angular step clamped" in out.describe()


@pytest.mark.parametrize(("grip", "expected"), [(-0.5, 0.0), (1.7, 1.0), (0.25, 0.25)])
def test_gripper_clipped(grip, expected):
    out = make_safe([0, 0, 0, 0, 0, 0, grip], SafetyLimits(gripper_min=0.0, gripper_max=1.0))
    assert out.command[6] == expected
    assert out.gripper_clamped == (grip != expected)


def test_narrow_gripper_range():
    lim = SafetyLimits(gripper_min=0.2, gripper_max=0.6)
    assert make_safe([0, 0, 0, 0, 0, 0, 0.0], lim).command[6] == 0.2
    assert make_safe([0, 0, 0, 0, 0, 0, 0.9], lim).command[6] == 0.6


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("index", [0, 4, 6])
def test_non_finite_becomes_stop_holding_gripper(bad, index):
    cmd = np.array([0.001, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3])
    cmd[index] = bad
    out = make_safe(cmd, LIM, hold_gripper=0.8)
    np.testing.assert_array_equal(out.command, [0, 0, 0, 0, 0, 0, 0.8])
    assert out.non_finite and out.modified
    assert "non-finite" in out.describe()


def test_stop_gripper_default_and_hold_clipped():
    out = make_safe([math.nan] * 7, SafetyLimits(gripper_min=0.1, gripper_max=0.9))
    assert out.command[6] == 0.1  # no hold value: gripper_min
    out = make_safe([math.nan] * 7, SafetyLimits(gripper_min=0.1, gripper_max=0.9), hold_gripper=5.0)
    assert out.command[6] == 0.9
    out = make_safe([math.nan] * 7, LIM, hold_gripper=math.nan)
    assert np.isfinite(out.command).all()


def test_zero_limit_blocks_motion():
    lim = SafetyLimits(max_linear_step=0.0, max_angular_step=0.0)
    out = make_safe([0.1, 0.0, 0.0, 0.0, 0.0, 0.2, 0.5], lim)
    np.testing.assert_array_equal(out.command, [0, 0, 0, 0, 0, 0, 0.5])
    assert out.linear_clamped and out.angular_clamped


def test_random_commands_always_safe():
    rng = np.random.default_rng(0)
    cmds = rng.normal(scale=1.0, size=(500, 7))
    cmds[rng.random(cmds.shape) < 0.02] = np.nan
    for cmd in cmds:
        out = make_safe(cmd, LIM, hold_gripper=0.4).command
        assert np.isfinite(out).all()
        assert np.linalg.norm(out[:3]) <= LIM.max_linear_step + 1e-12
        assert np.linalg.norm(out[3:6]) <= LIM.max_angular_step + 1e-12
        assert LIM.gripper_min <= out[6] <= LIM.gripper_max


def test_does_not_mutate_input():
    cmd = np.array([1.0, 0, 0, 0, 0, 0, 2.0])
    make_safe(cmd, LIM)
    assert cmd[0] == 1.0 and cmd[6] == 2.0


def test_wrong_shape_rejected():
    with pytest.raises(ValueError, match="7 elements"):
        make_safe(np.zeros(6), LIM)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_linear_step": -0.1}, "max_linear_step must be >= 0"),
        ({"max_angular_step": math.nan}, "max_angular_step must be a finite"),
        ({"gripper_min": 0.8, "gripper_max": 0.2}, "gripper_min"),
        ({"gripper_max": 1.5}, "gripper_max must be <= 1"),
        ({"gripper_min": -0.1}, "gripper_min must be >= 0"),
    ],
)
def test_invalid_limits(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SafetyLimits(**kwargs)


def test_stop_command():
    np.testing.assert_array_equal(stop_command(0.5), [0, 0, 0, 0, 0, 0, 0.5])
