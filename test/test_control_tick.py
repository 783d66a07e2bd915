"""The policy node's control tick as a function (ROS-free): what the arm gets, tick by tick.

The node tests (test_policy_node*.py) check the same guarantees over DDS with a real model; here
each decision is driven directly, including inputs DDS and a small random student rarely produce
(NaN and huge chunks, clocks out of sync, every mode switch in between).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from actdistill_ros.control.handoff import Mode, Source
from actdistill_ros.control.node_config import PARAMS, validate_config
from actdistill_ros.control.tick import (
    NON_FINITE_STOP,
    ControlState,
    Received,
    TickInputs,
    control_tick,
    gripper_override,
    twist_override,
)

RATE_HZ = 20.0
PERIOD = 1.0 / RATE_HZ
MAX_LIN, MAX_ANG = 0.004, 0.02
T0 = 1000.0  # monotonic and ROS clock of the first tick [s]
IMAGE_STAMP = "image stamp"  # stamps are opaque to the tick: what the chunk came with goes out with it
TWIST_STAMP = "twist stamp"


def config(**overrides):
    values = {spec.name: spec.default for spec in PARAMS}
    values.update({
        "control_rate_hz": RATE_HZ, "image_timeout_s": 0.4, "instruction_timeout_s": 60.0, "teleop_timeout_s": 0.3,
        "limits.max_linear_step": MAX_LIN, "limits.max_angular_step": MAX_ANG, "limits.max_linear_change": 0.0,
        "limits.max_angular_change": 0.0, "deadband": 0.05, "gripper_deadband": 0.05, "ramp_s": 0.2,
    })
    values.update(overrides)
    return validate_config(values)


def policy_inputs(t: float, **overrides) -> TickInputs:
    """Everything the policy needs, fresh at ``t`` (a prediction from 10 ms ago)."""
    values = {"now_s": t, "clock_s": t, "instruction": Received(T0 - 1.0), "image": Received(t - 0.01),
              "has_prediction": True, "prediction_ready_s": t - 0.01}
    values.update(overrides)
    return TickInputs(**values)


def chunk(rows: int = 8, seed: int = 0, scale: float = 0.001) -> np.ndarray:
    actions = np.random.default_rng(seed).normal(0.0, scale, size=(rows, 7))
    actions[:, 6] = 0.5
    return actions


def autonomy(cfg=None, ramp_s: float = 0.0):
    """A state in AUTONOMY, the ramp done (ramp_s 0) unless asked for."""
    cfg = cfg or config(initial_mode="autonomy", ramp_s=ramp_s)
    return cfg, ControlState.initial(cfg)


def assert_stop(out, reason_start: str, gripper: float) -> None:
    assert out.source == Source.STOP and out.stopped
    assert out.stop_reason.startswith(reason_start), out.stop_reason
    assert np.array_equal(out.command[:6], np.zeros(6))
    assert out.command[6] == pytest.approx(gripper)
    assert out.stamp is None and out.chunk.shape == (0, 7)


def assert_safe(out, cfg) -> None:
    rows = np.vstack([out.command[None, :], out.chunk])
    assert np.isfinite(rows).all(), rows
    assert (np.linalg.norm(rows[:, :3], axis=1) <= cfg.limits.max_linear_step * (1 + 1e-9)).all(), rows
    assert (np.linalg.norm(rows[:, 3:6], axis=1) <= cfg.limits.max_angular_step * (1 + 1e-9)).all(), rows
    assert ((rows[:, 6] >= cfg.limits.gripper_min) & (rows[:, 6] <= cfg.limits.gripper_max)).all(), rows
    if out.stopped:
        assert not out.command[:6].any() and out.chunk.shape == (0, 7)


def test_policy_drives_with_fresh_inputs_one_row_per_tick():
    cfg, state = autonomy()
    actions = chunk()
    out = control_tick(cfg, policy_inputs(T0, new_chunk=(actions, IMAGE_STAMP)), state)
    assert out.source == Source.POLICY and out.mode == Mode.AUTONOMY and out.stop_reason == ""
    np.testing.assert_allclose(out.command, actions[0])
    np.testing.assert_allclose(out.chunk, actions[1:])  # the rest of the plan goes along
    assert out.stamp == IMAGE_STAMP  # the image the command was computed from
    assert out.log is None
    second = control_tick(cfg, policy_inputs(T0 + PERIOD), state)
    np.testing.assert_allclose(second.command, actions[1])
    np.testing.assert_allclose(second.chunk, actions[2:])
    assert second.ages.image == pytest.approx(0.01) and second.ages.instruction == pytest.approx(PERIOD + 1.0)
    assert second.ages.teleop == -1.0 and second.ages.ee_pose == -1.0


def test_stale_image_stops_the_arm_logs_it_and_the_end_of_it():
    cfg, state = autonomy()
    control_tick(cfg, policy_inputs(T0, new_chunk=(chunk(rows=40), IMAGE_STAMP)), state)
    t = T0 + PERIOD
    stale = control_tick(cfg, policy_inputs(t, image=Received(t - 0.41)), state)  # image_timeout_s 0.4
    assert_stop(stale, "image stale (0.41 s > 0.40 s)", gripper=0.5)  # the gripper is held where it was
    assert stale.log == ("warn", "safety stop: image stale (0.41 s > 0.40 s)")
    assert stale.counters.stop_events == 1
    again = control_tick(cfg, policy_inputs(t + PERIOD, image=Received(t - 0.41)), state)
    assert again.stopped and again.log is None  # throttled: the same reason is not repeated
    fresh = control_tick(cfg, policy_inputs(t + 2 * PERIOD), state)
    assert fresh.source == Source.POLICY
    assert fresh.log is not None and fresh.log[0] == "info" and fresh.log[1].startswith("safety stop ended")


def test_the_image_age_comes_from_its_stamp_and_a_stamp_from_the_future_is_not_trusted():
    cfg, state = autonomy()
    control_tick(cfg, policy_inputs(T0, new_chunk=(chunk(rows=40), IMAGE_STAMP)), state)
    t = T0 + PERIOD
    # received just now, but stamped 0.5 s ago on the node clock: stale
    old = control_tick(cfg, policy_inputs(t, image=Received(t - 0.001, stamp_s=t - 0.5)), state)
    assert_stop(old, "image stale (0.50 s > 0.40 s)", gripper=0.5)
    # stamped 0.3 s ahead (stamp_skew_tolerance_s 0.1): the clocks disagree
    ahead = control_tick(cfg, policy_inputs(t + PERIOD, image=Received(t, stamp_s=t + PERIOD + 0.3)), state)
    assert_stop(ahead, "image stamp 0.30 s ahead of this node's clock", gripper=0.5)
    within = control_tick(cfg, policy_inputs(t + 2 * PERIOD, image=Received(t, stamp_s=t + 2 * PERIOD + 0.05)), state)
    assert within.source == Source.POLICY


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"instruction": None}, "no instruction"),
    ({"instruction": Received(T0 - 61.0)}, "instruction stale"),
    ({"instruction_error": "instruction refused: 5000 bytes > 4096"}, "instruction refused"),
    ({"image": None}, "no image received"),
    ({"image_error": "bad encoding"}, "image unusable: bad encoding"),
    ({"inference_error": "inference failed: RuntimeError: boom"}, "inference failed"),
])
def test_the_policy_without_what_it_needs_stops_the_arm_with_the_root_cause(overrides, reason):
    cfg, state = autonomy()
    out = control_tick(cfg, policy_inputs(T0, new_chunk=(chunk(), IMAGE_STAMP), **overrides), state)
    assert_stop(out, reason, gripper=cfg.limits.gripper_min)
    assert out.log == ("warn", f"safety stop: {out.stop_reason}")


def test_a_used_up_chunk_stops_the_arm_and_says_why():
    cfg, state = autonomy()
    assert_stop(control_tick(cfg, policy_inputs(T0, has_prediction=False), state), "no prediction yet", 0.0)
    control_tick(cfg, policy_inputs(T0 + PERIOD, new_chunk=(chunk(rows=2), IMAGE_STAMP)), state)
    control_tick(cfg, policy_inputs(T0 + 2 * PERIOD), state)
    t = T0 + 3 * PERIOD
    behind = control_tick(cfg, policy_inputs(t, prediction_ready_s=t - 0.2), state)
    assert_stop(behind, "action chunk used up: inference falling behind (last prediction 0.20 s ago)", 0.5)
    no_image = control_tick(cfg, policy_inputs(t + PERIOD, image=Received(t - 0.2)), state)
    assert_stop(no_image, "action chunk used up: no new image for 0.25 s", 0.5)


def test_teleop_drives_while_fresh_and_stale_teleop_stops_the_arm():
    cfg = config()
    state = ControlState.initial(cfg)
    assert state.handoff.mode == Mode.TELEOP
    assert_stop(control_tick(cfg, policy_inputs(T0), state), "no teleop input", 0.0)
    twist = np.array([0.04, 0.0, 0.0, 0.0, 0.0, 0.2])  # 2 mm and 10 mrad per step at 20 Hz
    teleop = {"twist": twist, "twist_in": Received(T0, stamp_s=T0), "twist_stamp": TWIST_STAMP,
              "teleop_gripper": 0.7, "gripper_in": Received(T0)}
    out = control_tick(cfg, policy_inputs(T0 + 0.1, **teleop), state)
    assert out.source == Source.HUMAN and out.stamp == TWIST_STAMP
    np.testing.assert_allclose(out.command, [0.002, 0, 0, 0, 0, 0.01, 0.7])
    assert out.ages.teleop == pytest.approx(0.1)
    stale = control_tick(cfg, policy_inputs(T0 + 0.31, **teleop), state)  # teleop_timeout_s 0.3
    assert_stop(stale, "teleop stale (> 0.30 s)", gripper=0.7)
    unstamped = {**teleop, "twist_in": Received(T0 + 0.3), "twist_stamp": None}
    assert control_tick(cfg, policy_inputs(T0 + 0.35, **unstamped), state).stamp is None  # stamped now


def test_shadow_passes_the_human_command_and_reports_the_agreement():
    cfg = config(initial_mode="shadow")
    state = ControlState.initial(cfg)
    actions = chunk()
    twist = np.array([0.02, 0.0, 0.0, 0.0, 0.0, 0.0])
    out = control_tick(cfg, policy_inputs(T0, new_chunk=(actions, IMAGE_STAMP), twist=twist,
                                          twist_in=Received(T0), teleop_gripper=0.5, gripper_in=Received(T0)), state)
    human = np.array([0.001, 0, 0, 0, 0, 0, 0.5])
    assert out.source == Source.HUMAN and out.mode == Mode.SHADOW
    np.testing.assert_allclose(out.command, human)
    assert out.agreement is not None
    assert out.agreement.error == pytest.approx(np.linalg.norm(actions[0] - human))
    assert out.chunk.shape == (0, 7)  # the policy's plan is not sent: it does not drive


def test_a_twist_above_the_deadband_hands_control_to_the_human_before_the_next_tick():
    cfg, state = autonomy()
    control_tick(cfg, policy_inputs(T0, new_chunk=(chunk(rows=40), IMAGE_STAMP)), state)
    small = np.array([0.03, 0.0, 0.0, 0.0, 0.0, 0.0])  # 0.03 < deadband 0.05
    assert twist_override(state, small, T0 + 0.01) is None
    assert control_tick(cfg, policy_inputs(T0 + PERIOD, twist=small, twist_in=Received(T0 + 0.01)),
                        state).source == Source.POLICY
    big = np.array([0.06, 0.0, 0.0, 0.0, 0.0, 0.0])
    transition = twist_override(state, big, T0 + 0.06)
    assert transition is not None and (transition.from_mode, transition.to_mode) == (Mode.AUTONOMY, Mode.TELEOP)
    assert "human override" in transition.reason
    assert state.executor.n_chunks == 0  # the policy's plan is void
    t = T0 + 2 * PERIOD
    out = control_tick(cfg, policy_inputs(t, twist=big, twist_in=Received(T0 + 0.06), twist_stamp=TWIST_STAMP), state)
    assert out.source == Source.HUMAN and out.mode == Mode.TELEOP and out.stamp == TWIST_STAMP
    np.testing.assert_allclose(out.command[:6], [0.003, 0, 0, 0, 0, 0])
    # back in AUTONOMY, the old plan does not come back: the arm waits for a fresh prediction
    state.handoff.request(Mode.AUTONOMY, "test", t + 0.01)
    assert_stop(control_tick(cfg, policy_inputs(t + PERIOD), state), "action chunk used up", out.command[6])


def test_a_non_finite_twist_also_overrides_and_is_never_sent():
    cfg, state = autonomy()
    control_tick(cfg, policy_inputs(T0, new_chunk=(chunk(rows=40), IMAGE_STAMP)), state)
    nan = np.array([math.nan, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert twist_override(state, nan, T0 + 0.01).to_mode == Mode.TELEOP
    out = control_tick(cfg, policy_inputs(T0 + PERIOD, twist=nan, twist_in=Received(T0 + 0.01)), state)
    assert_stop(out, NON_FINITE_STOP, gripper=0.5)
    assert out.counters.non_finite_commands == 1


def test_a_gripper_change_above_its_deadband_hands_control_to_the_human():
    cfg, state = autonomy()
    control_tick(cfg, policy_inputs(T0, new_chunk=(chunk(rows=40), IMAGE_STAMP)), state)  # gripper 0.5 commanded
    assert gripper_override(state, 0.53, None, T0 + 0.01) is None  # against the commanded 0.5: within 0.05
    assert gripper_override(state, 0.57, 0.53, T0 + 0.02) is None  # against the human's previous one
    transition = gripper_override(state, 0.9, 0.57, T0 + 0.03)
    assert transition is not None and transition.to_mode == Mode.TELEOP
    out = control_tick(cfg, policy_inputs(T0 + PERIOD, teleop_gripper=0.9, gripper_in=Received(T0 + 0.03)), state)
    assert out.source == Source.HUMAN
    np.testing.assert_allclose(out.command, [0, 0, 0, 0, 0, 0, 0.9])


def test_autonomy_ramps_from_the_last_human_command_to_the_policy():
    cfg = config(ramp_s=0.2)
    state = ControlState.initial(cfg)
    twist = np.array([0.02, 0.0, 0.0, 0.0, 0.0, 0.0])
    human = control_tick(cfg, policy_inputs(T0, twist=twist, twist_in=Received(T0), teleop_gripper=0.2,
                                            gripper_in=Received(T0)), state).command
    np.testing.assert_allclose(human, [0.001, 0, 0, 0, 0, 0, 0.2])
    state.handoff.request(Mode.AUTONOMY, "test", T0 + 0.01)
    policy = np.array([0.0, 0.002, 0.0, 0.0, 0.0, 0.01, 0.8])
    plan = (np.tile(policy, (8, 1)), IMAGE_STAMP)
    outs = [control_tick(cfg, policy_inputs(T0 + 0.01 + k * PERIOD, new_chunk=plan if k == 0 else None), state)
            for k in range(6)]
    for k, out in enumerate(outs[:4]):  # 0.2 s = 4 ticks of 50 ms
        alpha = k * PERIOD / 0.2
        assert out.source == Source.BLEND, k
        np.testing.assert_allclose(out.command, (1 - alpha) * human + alpha * policy, atol=1e-12)
        assert out.stamp == IMAGE_STAMP and len(out.chunk) == 7 - k
    for out in outs[4:]:
        assert out.source == Source.POLICY
        np.testing.assert_allclose(out.command, policy)


def test_reactivation_ramps_in_from_standing_still():
    cfg, state = autonomy(ramp_s=0.2)
    state.handoff.restart_ramp(T0 - 1.0)  # ramp long done
    control_tick(cfg, policy_inputs(T0, new_chunk=(chunk(), IMAGE_STAMP)), state)
    state.reactivate(T0 + PERIOD)
    assert state.executor.n_chunks == 0
    policy = np.array([0.002, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5])
    out = control_tick(cfg, policy_inputs(T0 + 2 * PERIOD, new_chunk=(np.tile(policy, (4, 1)), IMAGE_STAMP)), state)
    assert out.source == Source.BLEND
    np.testing.assert_allclose(out.command[:6], 0.25 * policy[:6])  # a quarter of the way from rest


def test_the_workspace_box_stops_without_a_fresh_pose_and_clips_with_one():
    cfg = config(initial_mode="autonomy", ramp_s=0.0, **{"workspace.enabled": True, "workspace.max": [0.5, 1.0, 1.5],
                                                        "workspace.pose_timeout_s": 0.2})
    state = ControlState.initial(cfg)
    push = np.tile([0.003, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5], (20, 1))
    out = control_tick(cfg, policy_inputs(T0, new_chunk=(push, IMAGE_STAMP)), state)
    assert_stop(out, "workspace: no ee_pose received", gripper=0.0)  # held, like every stop
    at_wall = {"pose": np.array([0.499, 0.0, 0.5]), "pose_in": Received(T0)}
    out = control_tick(cfg, policy_inputs(T0 + PERIOD, **at_wall), state)
    assert out.source == Source.POLICY and out.command[0] == pytest.approx(0.001)  # up to the wall, not beyond
    assert out.counters.workspace_clips == 1 and out.ages.ee_pose == pytest.approx(PERIOD)
    stale = control_tick(cfg, policy_inputs(T0 + 0.25, **at_wall), state)
    assert_stop(stale, "workspace: ee_pose stale", gripper=0.5)
    wrong_frame = control_tick(cfg, policy_inputs(T0 + 0.3, pose=np.zeros(3), pose_in=Received(T0 + 0.3),
                                                  pose_frame_error="ee_pose frame_id 'tool0' is not ..."), state)
    assert_stop(wrong_frame, "workspace: ee_pose frame_id 'tool0'", gripper=0.5)


@pytest.mark.parametrize("cfg", [
    config(),
    config(**{"limits.max_linear_change": 0.001, "limits.max_angular_change": 0.005, "limits.gripper_min": 0.1,
              "limits.gripper_max": 0.9, "temporal_ensemble": True, "ramp_s": 0.1}),
], ids=["step limits", "change limits, gripper range, ensembling"])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN chunks and twists, on purpose
def test_whatever_comes_in_the_command_is_finite_and_within_the_limits(cfg):
    """Random inputs (chunks up to 100x the limits with NaN and inf, twists the same, stale and
    missing inputs, mode switches): no command and no chunk row goes out unsafe, and a non-finite
    driver is a stop."""
    rng = np.random.default_rng(1)
    state = ControlState.initial(cfg)
    sources, non_finite_stops = set(), 0
    t = T0
    for _ in range(600):
        t += PERIOD * rng.uniform(0.5, 1.5)
        if rng.random() < 0.05:
            state.handoff.request(Mode(int(rng.choice([0, 1, 2, 2, 2]))), "test", t)
        new_chunk = None
        if rng.random() < 0.3:
            actions = rng.normal(0.0, 0.2, size=(int(rng.integers(1, 9)), 7))
            actions[:, 6] = rng.uniform(-1.0, 2.0, size=len(actions))
            if rng.random() < 0.2:
                actions[rng.integers(len(actions)), rng.integers(7)] = rng.choice([math.nan, math.inf, -math.inf])
            new_chunk = (actions, IMAGE_STAMP)
        twist = rng.normal(0.0, rng.choice([0.01, 1.0]), size=6)
        if rng.random() < 0.05:
            twist[rng.integers(6)] = math.nan
        if rng.random() < 0.05:
            twist_override(state, twist, t)
        gripper = float(rng.choice([rng.uniform(-1.0, 2.0), math.nan])) if rng.random() < 0.2 else 0.5
        if rng.random() < 0.05:
            gripper_override(state, gripper, None, t)
        ages = rng.uniform(0.0, [0.6, 0.5, 0.5])  # image, twist, gripper: fresh or stale
        out = control_tick(cfg, policy_inputs(t, new_chunk=new_chunk, image=Received(t - ages[0]), twist=twist,
                                              twist_in=Received(t - ages[1]), teleop_gripper=gripper,
                                              gripper_in=Received(t - ages[2])), state)
        assert_safe(out, cfg)
        sources.add(out.source)
        non_finite_stops += out.stop_reason == NON_FINITE_STOP
    assert sources == set(Source)  # every path was taken
    assert non_finite_stops > 0


def test_rate_and_counters_are_reported_per_tick():
    cfg, state = autonomy()
    actions = chunk(rows=40)
    actions[0, 0] = 1.0  # 250x the step limit: clamped
    outs = [control_tick(cfg, policy_inputs(T0 + k * PERIOD, new_chunk=(actions, IMAGE_STAMP) if k == 0 else None),
                         state) for k in range(30)]
    assert outs[0].control_rate_hz == 0.0  # one tick: no rate yet
    assert outs[-1].control_rate_hz == pytest.approx(RATE_HZ)
    assert outs[0].counters.linear_step_clamps == 1 and outs[0].counters.last_event == "linear step clamped"
    assert outs[0].counters is not state.filter.counters  # a snapshot: later ticks do not change it
    control_tick(cfg, policy_inputs(T0 + 2.0, image=None), state)
    assert outs[-1].counters.stop_events == 0 and state.filter.counters.stop_events == 1
