"""Mode state machine: requests, human override, ramp, shadow agreement."""

import math

import numpy as np
import pytest

from actdistill_ros.control.handoff import (
    Agreement,
    HandoffConfig,
    HandoffController,
    Mode,
    Source,
    agreement,
)

HUMAN = np.array([0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
POLICY = np.array([0.0, 0.02, 0.0, 0.0, 0.0, 0.0, 1.0])


def make(mode=Mode.TELEOP, deadband=0.05, ramp_s=1.0):
    return HandoffController(HandoffConfig(deadband=deadband, ramp_s=ramp_s), mode=mode)


def test_mode_values_match_messages():
    assert (Mode.TELEOP, Mode.SHADOW, Mode.AUTONOMY) == (0, 1, 2)
    assert (Source.STOP, Source.HUMAN, Source.POLICY, Source.BLEND) == (0, 1, 2, 3)


@pytest.mark.parametrize(
    ("value", "mode"),
    [("teleop", Mode.TELEOP), ("SHADOW", Mode.SHADOW), (" Autonomy ", Mode.AUTONOMY), (2, Mode.AUTONOMY)],
)
def test_parse(value, mode):
    assert Mode.parse(value) is mode


@pytest.mark.parametrize("value", ["auto", 3, -1, True, None])
def test_parse_rejects(value):
    with pytest.raises(ValueError, match="unknown mode"):
        Mode.parse(value)


def test_teleop_passes_human_through():
    h = make()
    d = h.step(0.0, HUMAN, POLICY)
    assert d.source == Source.HUMAN and d.mode == Mode.TELEOP
    np.testing.assert_array_equal(d.command, HUMAN)
    assert d.agreement is None


def test_missing_human_gives_stop_with_reason():
    h = make()
    d = h.step(0.0, None, POLICY, hold_gripper=0.7, human_unavailable_reason="teleop stale")
    assert d.source == Source.STOP and d.stop_reason == "teleop stale"
    np.testing.assert_array_equal(d.command, [0, 0, 0, 0, 0, 0, 0.7])


def test_request_records_transition():
    h = make()
    tr = h.request(Mode.SHADOW, "service request", now_s=3.0)
    assert (tr.from_mode, tr.to_mode, tr.reason, tr.time_s) == (
        Mode.TELEOP,
        Mode.SHADOW,
        "service request",
        3.0,
    )
    assert h.mode == Mode.SHADOW
    assert h.request("shadow", "again", 4.0) is None  # no-op, not recorded
    assert h.history == [tr]


def test_shadow_reports_agreement_and_drives_with_human():
    h = make(Mode.SHADOW)
    d = h.step(0.0, HUMAN, POLICY)
    assert d.source == Source.HUMAN
    np.testing.assert_array_equal(d.command, HUMAN)
    # diff = (-0.01, 0.02, 0, 0, 0, 0, 1) -> sqrt(1e-4 + 4e-4 + 1) ; motion parts orthogonal -> cos 0
    assert math.isclose(d.agreement.error, math.sqrt(0.0001 + 0.0004 + 1.0))
    assert d.agreement.cosine == 0.0
    # no policy command: no agreement, still human
    assert h.step(0.1, HUMAN, None).agreement is None


def test_agreement_values():
    a = agreement([1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0])
    assert a == Agreement(error=0.0, cosine=1.0)
    a = agreement([1, 1, 0, 0, 0, 0, 0.5], [-1, -1, 0, 0, 0, 0, 0.5])
    assert math.isclose(a.error, math.sqrt(8)) and math.isclose(a.cosine, -1.0)
    a = agreement([1, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0])
    assert math.isclose(a.cosine, 1 / math.sqrt(2))
    assert agreement(np.zeros(7), np.zeros(7)).cosine == 1.0  # both stand still
    assert agreement(np.zeros(7), [0, 0, 1, 0, 0, 0, 0]).cosine == 0.0
    # the gripper counts in the error but not in the cosine
    a = agreement([0, 0, 1, 0, 0, 0, 0], [0, 0, 2, 0, 0, 0, 1])
    assert math.isclose(a.error, math.sqrt(2)) and a.cosine == 1.0


def test_ramp_blends_linearly_from_last_human_command():
    h = make(ramp_s=1.0)
    h.step(0.0, HUMAN, POLICY)  # last human command = HUMAN
    h.request(Mode.AUTONOMY, "service request", now_s=10.0)
    d0 = h.step(10.0, None, POLICY)
    assert d0.source == Source.BLEND and d0.blend_alpha == 0.0
    np.testing.assert_allclose(d0.command, HUMAN)
    d = h.step(10.25, None, POLICY)
    assert d.source == Source.BLEND and math.isclose(d.blend_alpha, 0.25)
    np.testing.assert_allclose(d.command, [0.0075, 0.005, 0, 0, 0, 0, 0.25])
    d = h.step(10.5, None, POLICY)
    np.testing.assert_allclose(d.command, [0.005, 0.01, 0, 0, 0, 0, 0.5])
    d = h.step(11.0, None, POLICY)
    assert d.source == Source.POLICY and d.blend_alpha == 1.0
    np.testing.assert_allclose(d.command, POLICY)
    # the ramp is over for good
    assert h.step(11.1, None, POLICY).source == Source.POLICY


def test_ramp_from_stop_when_teleop_was_missing():
    h = make(ramp_s=2.0)
    h.step(0.0, HUMAN, None)
    h.step(0.1, None, None, hold_gripper=0.4)  # teleop went stale -> stop issued
    h.request(Mode.AUTONOMY, "r", 1.0)
    d = h.step(2.0, None, POLICY, hold_gripper=0.4)
    # halfway from (0,...,0,0.4) to POLICY
    np.testing.assert_allclose(d.command, [0.0, 0.01, 0, 0, 0, 0, 0.7])


def test_zero_ramp_switches_at_once():
    h = make(ramp_s=0.0)
    h.step(0.0, HUMAN, POLICY)
    h.request(Mode.AUTONOMY, "r", 1.0)
    d = h.step(1.0, HUMAN, POLICY)
    assert d.source == Source.POLICY
    np.testing.assert_array_equal(d.command, POLICY)


def test_autonomy_without_policy_command_stops():
    h = make(Mode.AUTONOMY)
    d = h.step(0.0, HUMAN, None, hold_gripper=1.0, policy_unavailable_reason="image stale")
    assert d.source == Source.STOP and d.stop_reason == "image stale"
    np.testing.assert_array_equal(d.command, [0, 0, 0, 0, 0, 0, 1.0])


def test_human_override_in_autonomy_same_tick():
    h = make(Mode.AUTONOMY, deadband=0.05, ramp_s=0.0)
    assert h.human_input(0.05, 1.0) is None  # at the deadband: no override
    assert h.mode == Mode.AUTONOMY
    tr = h.human_input(0.12, 2.0)
    assert tr.from_mode == Mode.AUTONOMY and tr.to_mode == Mode.TELEOP
    assert tr.reason == "human override (|twist| 0.12 > deadband 0.05)"
    assert h.mode == Mode.TELEOP
    # the very next command is the human's
    d = h.step(2.0, HUMAN, POLICY)
    assert d.source == Source.HUMAN
    np.testing.assert_array_equal(d.command, HUMAN)


def test_human_input_outside_autonomy_is_ignored():
    for mode in (Mode.TELEOP, Mode.SHADOW):
        h = make(mode)
        assert h.human_input(10.0, 0.0) is None
        assert h.mode == mode


def test_non_finite_human_input_overrides():
    h = make(Mode.AUTONOMY)
    assert h.human_input(math.nan, 0.0).to_mode == Mode.TELEOP


def test_override_during_ramp_and_reentry_restarts_ramp():
    h = make(ramp_s=1.0)
    h.step(0.0, HUMAN, POLICY)
    h.request(Mode.AUTONOMY, "r", 1.0)
    assert h.step(1.5, None, POLICY).source == Source.BLEND
    h.human_input(1.0, 1.6)
    assert h.mode == Mode.TELEOP
    h.step(1.7, 2 * HUMAN, POLICY)
    h.request(Mode.AUTONOMY, "r", 5.0)
    d = h.step(5.0, None, POLICY)
    assert d.source == Source.BLEND and d.blend_alpha == 0.0
    np.testing.assert_allclose(d.command, 2 * HUMAN)


def test_history_kept():
    h = make()
    h.request("shadow", "a", 0.0)
    h.request("autonomy", "b", 1.0)
    h.human_input(1.0, 2.0)
    assert [(t.from_mode, t.to_mode) for t in h.history] == [
        (Mode.TELEOP, Mode.SHADOW),
        (Mode.SHADOW, Mode.AUTONOMY),
        (Mode.AUTONOMY, Mode.TELEOP),
    ]


@pytest.mark.parametrize("kwargs", [{"deadband": -1.0}, {"ramp_s": -0.5}, {"ramp_s": math.inf}])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        HandoffConfig(**kwargs)


def test_human_gripper_change_overrides_autonomy_like_a_twist():
    h = HandoffController(HandoffConfig(deadband=0.02, ramp_s=0.0, gripper_deadband=0.05), Mode.AUTONOMY)
    assert h.human_gripper_input(0.03, 0.0, 1.0) is None  # within the gripper deadband
    tr = h.human_gripper_input(1.0, 0.0, 2.0)  # the human closes the gripper
    assert tr is not None and (tr.from_mode, tr.to_mode) == (Mode.AUTONOMY, Mode.TELEOP)
    assert tr.reason == "human override (gripper change 1 > gripper deadband 0.05)"
    assert h.human_gripper_input(0.0, 1.0, 3.0) is None  # TELEOP already: nothing to override
    h.request(Mode.AUTONOMY, "again", 4.0)
    assert h.human_gripper_input(float("nan"), 0.0, 5.0).to_mode == Mode.TELEOP


def test_restart_ramp_blends_from_standing_still():
    h = HandoffController(HandoffConfig(deadband=0.02, ramp_s=1.0), Mode.TELEOP)
    human = np.array([0.01, 0, 0, 0, 0, 0, 0.2])
    h.step(0.0, human, None)
    h.request(Mode.AUTONOMY, "go", 1.0)
    h.step(5.0, None, np.zeros(7))  # ramp done
    h.restart_ramp(10.0)  # e.g. reactivated after a deactivation
    policy = np.array([0.02, 0, 0, 0, 0, 0, 1.0])
    d = h.step(10.5, None, policy, hold_gripper=0.2)
    assert d.source == Source.BLEND and d.blend_alpha == pytest.approx(0.5)
    np.testing.assert_allclose(d.command, [0.01, 0, 0, 0, 0, 0, 0.6])  # from a stop holding 0.2
