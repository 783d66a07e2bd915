"""Safety filter: every command leaves finite, within the limits, within the change limit and the
workspace box; input ages from header stamps."""

import math

import numpy as np
import pytest

from actdistill_ros.control.safety import (
    CommandFilter,
    CommandFilterConfig,
    SafetyLimits,
    WorkspaceBox,
    clip_to_workspace,
    input_age,
    limit_change,
    make_safe,
    stop_command,
)

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


# -- workspace box, change limit, input ages, the command filter ---------------------------------

BOX = WorkspaceBox((-0.5, -0.5, 0.0), (0.5, 0.5, 0.8))


def test_workspace_clip_per_axis_slides_along_the_wall():
    # at x = 0.49 a step of +3 cm would leave the box: x is clipped to the wall, y and z pass
    delta, what = clip_to_workspace(np.array([0.03, 0.01, -0.01]), np.array([0.49, 0.0, 0.4]), BOX)
    np.testing.assert_allclose(delta, [0.01, 0.01, -0.01], atol=1e-12)
    assert what == "x > 0.5"
    delta, what = clip_to_workspace(np.array([0.0, 0.0, -0.05]), np.array([0.0, 0.0, 0.02]), BOX)
    np.testing.assert_allclose(delta, [0.0, 0.0, -0.02], atol=1e-12)
    assert what == "z < 0"
    inside, what = clip_to_workspace(np.array([0.01, -0.01, 0.01]), np.array([0.0, 0.0, 0.4]), BOX)
    np.testing.assert_allclose(inside, [0.01, -0.01, 0.01])
    assert what == ""


def test_workspace_outside_the_box_only_moves_back_and_never_creates_motion():
    position = np.array([0.6, 0.0, 0.4])  # 10 cm beyond x max
    delta, what = clip_to_workspace(np.array([0.02, 0.0, 0.0]), position, BOX)
    assert delta[0] == 0.0 and what == "x > 0.5"  # further out: blocked
    delta, _ = clip_to_workspace(np.array([-0.02, 0.0, 0.0]), position, BOX)
    assert delta[0] == -0.02  # back towards the box: allowed
    delta, what = clip_to_workspace(np.zeros(3), position, BOX)
    np.testing.assert_array_equal(delta, np.zeros(3))  # no motion is never turned into motion
    assert what == ""


@pytest.mark.parametrize(
    ("lo", "hi", "match"),
    [((0.0, 0.0, 0.0), (1.0, 1.0, 0.0), "z is not"), ((0.0, 0.0), (1.0, 1.0, 1.0), "3 finite numbers"),
     ((0.0, math.nan, 0.0), (1.0, 1.0, 1.0), "3 finite numbers")],
)
def test_workspace_box_validation(lo, hi, match):
    with pytest.raises(ValueError, match=match):
        WorkspaceBox(lo, hi)


def test_limit_change_scales_the_change_by_norm():
    prev = np.array([0.02, 0.0, 0.0, 0.0, 0.0, 0.1, 0.5])
    cmd = np.array([-0.02, 0.0, 0.0, 0.0, 0.0, -0.1, 0.9])  # full reversal
    out, lin, ang = limit_change(cmd, prev, 0.01, 0.05)
    np.testing.assert_allclose(out, [0.01, 0, 0, 0, 0, 0.05, 0.9], atol=1e-12)  # gripper not limited
    assert lin and ang
    out, lin, ang = limit_change(cmd, prev, 0.0, 0.0)  # 0 = no limit
    np.testing.assert_array_equal(out, cmd)
    assert not lin and not ang


def test_input_age_from_stamp_receive_time_and_skew():
    # unstamped: time since reception
    assert input_age(10.0, 9.7, 0.0, 500.0, 0.1).age_s == pytest.approx(0.3)
    assert input_age(10.0, 9.7, None, 500.0, 0.1).age_s == pytest.approx(0.3)
    # stamped 2 s ago, just received (a lagging driver): 2 s old, not 0
    assert input_age(10.0, 10.0, 498.0, 500.0, 0.1).age_s == pytest.approx(2.0)
    # stamped now but received 0.4 s ago: the receive time bounds it from below
    assert input_age(10.0, 9.6, 500.0, 500.0, 0.1).age_s == pytest.approx(0.4)
    # slightly in the future (within the tolerance): fresh
    age = input_age(10.0, 10.0, 500.05, 500.0, 0.1)
    assert age.age_s == 0.0 and not age.skewed
    # far in the future: the clocks disagree
    age = input_age(10.0, 10.0, 501.0, 500.0, 0.1)
    assert age.skewed and age.stamp_ahead_s == pytest.approx(1.0)


FILTER = CommandFilterConfig(SafetyLimits(0.02, 0.1, 0.0, 1.0), max_linear_change=0.01, max_angular_change=0.05,
                             workspace=BOX)


def test_command_filter_order_counts_and_stops():
    f = CommandFilter(FILTER)
    here = np.array([0.0, 0.0, 0.4])
    # from rest: the 5 cm command is clamped to 2 cm, then the change limit allows 1 cm
    out = f.apply([0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.0, is_stop=False, position=here)
    np.testing.assert_allclose(out.command[:3], [0.01, 0.0, 0.0])
    assert out.events == ("linear step clamped", "linear change limited") and not out.stop
    out = f.apply([0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.0, is_stop=False, position=here)
    np.testing.assert_allclose(out.command[:3], [0.02, 0.0, 0.0])
    # a stop goes out at once, never rate limited
    out = f.apply([0.0] * 6 + [0.3], 0.3, is_stop=True, position=here)
    np.testing.assert_array_equal(out.command, [0, 0, 0, 0, 0, 0, 0.3])
    assert out.stop
    # near the wall the workspace clip wins over everything before it
    out = f.apply([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.0, is_stop=False, position=np.array([0.495, 0.0, 0.4]))
    out = f.apply([0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.0, is_stop=False, position=np.array([0.495, 0.0, 0.4]))
    assert out.command[0] == pytest.approx(0.005) and out.events == ("workspace clip (x > 0.5)",)
    out = f.apply([math.nan] * 7, 0.7, is_stop=False, position=here)
    assert out.stop and out.command[6] == 0.7
    c = f.counters
    assert (c.linear_step_clamps, c.linear_change_limits, c.workspace_clips, c.non_finite_commands) == (1, 1, 1, 1)
    assert c.stop_events == 2  # motion -> stop twice (the first command came from rest)
    assert c.last_event == "non-finite command replaced by stop"


def test_command_filter_never_leaves_limits_or_box():
    rng = np.random.default_rng(1)
    f = CommandFilter(FILTER)
    position = np.array([0.0, 0.0, 0.4])
    previous = np.zeros(7)
    for _ in range(2000):
        cmd = rng.normal(scale=0.05, size=7)
        cmd[rng.random(7) < 0.01] = np.nan
        stop = bool(rng.random() < 0.05)
        out = f.apply(cmd, 0.5, is_stop=stop, position=position).command
        assert np.isfinite(out).all()
        assert np.linalg.norm(out[:3]) <= 0.02 + 1e-12 and np.linalg.norm(out[3:6]) <= 0.1 + 1e-12
        if not stop and np.isfinite(cmd).all():
            assert np.linalg.norm(out[3:6] - previous[3:6]) <= 0.05 + 1e-9
        position = position + out[:3]
        assert (position >= np.array(BOX.min_xyz) - 1e-9).all() and (position <= np.array(BOX.max_xyz) + 1e-9).all()
        previous = out


def test_command_filter_needs_a_position_with_a_workspace():
    with pytest.raises(ValueError, match="position is required"):
        CommandFilter(FILTER).apply(np.zeros(7), 0.0, is_stop=False)
