"""Why the policy node stops (root cause first), what it logs about stops, and its diagnostics (ROS-free)."""

import pytest

from actdistill_ros.control.monitoring import (
    ERROR,
    OK,
    WARN,
    StopReporter,
    diagnostic_report,
    instruction_problem,
    policy_stop_reason,
    pose_stop_reason,
    reason_kind,
)
from actdistill_ros.control.safety import InputAge, SafetyCounters

FRESH = InputAge(0.05)


def reason(**overrides):
    kwargs = dict(instruction_age=InputAge(1.0), instruction_timeout_s=300.0, image_age=FRESH, image_timeout_s=0.5,
                  skew_tolerance_s=0.1, inference_error=None, has_prediction=True, has_step=True, period_s=0.1,
                  prediction_age_s=0.05)
    kwargs.update(overrides)
    return policy_stop_reason(**kwargs)


def test_instructions_people_write_pass_and_absurd_ones_are_named():
    for text in ("go to the blue block, please \N{ROBOT FACE}", "reach the red cube.\nThen stop.\tThanks",
                 "x" * 4096, "\u00e9" * 2048):
        assert instruction_problem(text) is None, text
    assert instruction_problem("x" * 4097) == "4097 bytes > 4096"
    assert instruction_problem("\u00e9" * 2049) == "4098 bytes > 4096"
    assert instruction_problem("x" * 1_000_000) == "1000000 bytes > 4096"  # short: never the text itself
    assert instruction_problem("reach\x1b[31m red") == "control character U+001B at position 5"
    assert instruction_problem("pick\x00 the cube") == "control character U+0000 at position 4"


def test_policy_can_drive():
    assert reason() == ""


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"instruction_age": None}, "no instruction"),
        ({"instruction_age": None, "instruction_error": "instruction refused: 5000 bytes > 4096"},
         "instruction refused: 5000 bytes > 4096"),
        ({"instruction_age": InputAge(301.0)}, "instruction stale (301.00 s > 300.00 s)"),
        ({"image_age": None}, "no image received"),
        ({"image_age": InputAge(0.7)}, "image stale (0.70 s > 0.50 s)"),
        ({"image_age": InputAge(0.0, stamp_ahead_s=2.0)}, "image stamp 2.00 s ahead of this node's clock"),
        ({"image_error": "unsupported image encoding '16uc1'"}, "image unusable: unsupported image encoding '16uc1'"),
        ({"inference_error": "inference failed: RuntimeError: boom"}, "inference failed: RuntimeError: boom"),
        ({"has_step": False, "has_prediction": False}, "no prediction yet"),
    ],
)
def test_stop_reasons(overrides, expected):
    assert reason(**overrides).startswith(expected)


def test_a_used_up_chunk_names_its_cause():
    # the camera stopped: the chunk runs out before the image times out -- the reason names the image
    text = reason(has_step=False, image_age=InputAge(0.32), prediction_age_s=0.3)
    assert text == "action chunk used up: no new image for 0.32 s"
    # images keep coming but predictions do not
    text = reason(has_step=False, image_age=InputAge(0.02), prediction_age_s=0.45)
    assert text == "action chunk used up: inference falling behind (last prediction 0.45 s ago)"
    # root cause first: a stale image wins over everything after it
    assert reason(has_step=False, image_age=InputAge(0.9)).startswith("image stale")


def test_pose_stop_reasons():
    assert pose_stop_reason(None, 0.5, 0.1) == "workspace: no ee_pose received"
    assert pose_stop_reason(InputAge(0.8), 0.5, 0.1) == "workspace: ee_pose stale (0.80 s > 0.50 s)"
    assert pose_stop_reason(InputAge(0.0, 1.0), 0.5, 0.1).startswith("workspace: ee_pose stamp 1.00 s ahead")
    assert pose_stop_reason(InputAge(0.1), 0.5, 0.1, "ee_pose frame_id 'map' is not the action frame") \
        == "workspace: ee_pose frame_id 'map' is not the action frame"
    assert pose_stop_reason(InputAge(0.1), 0.5, 0.1) == ""


def test_reason_kind_ignores_numbers():
    assert reason_kind("image stale (0.61 s > 0.50 s)") == reason_kind("image stale (3.2 s > 0.50 s)")
    assert reason_kind("image stale (0.61 s > 0.50 s)") != reason_kind("no instruction")


def test_stop_reporter_logs_start_changes_reminders_and_end_throttled():
    r = StopReporter(min_interval_s=1.0, repeat_s=10.0)
    assert r.update(False, "", 0.0) is None  # driving: nothing
    assert r.update(True, "action chunk used up: no new image for 0.32 s", 1.0) == (
        "warn", "safety stop: action chunk used up: no new image for 0.32 s")
    assert r.update(True, "action chunk used up: no new image for 0.42 s", 1.1) is None  # same kind
    assert r.update(True, "image stale (0.52 s > 0.50 s)", 1.2) is None  # changed, but throttled ...
    assert r.update(True, "image stale (1.52 s > 0.50 s)", 2.2) == (
        "warn", "safety stop, reason now: image stale (1.52 s > 0.50 s)")  # ... reported once allowed
    assert r.update(True, "image stale (5.0 s > 0.50 s)", 6.0) is None
    assert r.update(True, "image stale (12.3 s > 0.50 s)", 12.3) == ("warn", "safety stop for 11 s: image stale "
                                                                       "(12.3 s > 0.50 s)")
    level, text = r.update(False, "", 13.0)
    assert level == "info" and text.startswith("safety stop ended after 12.0 s (6 ticks)")
    assert "last reason: image stale (12.3 s > 0.50 s)" in text
    assert r.update(False, "", 14.0) is None
    # a stop right after the end is throttled, and then its reason reported
    assert r.update(True, "no teleop input", 13.5) is None
    assert r.update(True, "no teleop input", 14.1) == ("warn", "safety stop: no teleop input")


def test_diagnostic_levels():
    kwargs = dict(lifecycle_state="active", mode="AUTONOMY", stopped=False, stop_reason="", latency_ms=4.2,
                  layers="3/6", control_rate_hz=10.0, target_rate_hz=10.0,
                  ages={"image": 0.05, "instruction": 3.0, "teleop": -1.0}, counters=SafetyCounters(),
                  dropped_images=0)
    ok = diagnostic_report(**kwargs)
    assert ok.level == OK and ok.message == "AUTONOMY: policy driving"
    values = dict(ok.values)
    assert values["image age [s]"] == "0.050" and values["teleop age [s]"] == "none"
    assert values["inference latency [ms]"] == "4.20" and values["workspace clips"] == "0"
    stopped = diagnostic_report(**{**kwargs, "stopped": True, "stop_reason": "image stale (0.7 s > 0.5 s)"})
    assert stopped.level == ERROR and stopped.message == "AUTONOMY: stopped: image stale (0.7 s > 0.5 s)"
    assert diagnostic_report(**{**kwargs, "mode": "TELEOP", "stopped": True, "stop_reason": "no teleop input"}).level \
        == WARN
    assert diagnostic_report(**{**kwargs, "lifecycle_state": "inactive"}).message == \
        "inactive: not commanding the arm"
    slow = diagnostic_report(**{**kwargs, "control_rate_hz": 6.0})
    assert slow.level == WARN and "6.0 Hz < 10.0 Hz" in slow.message
