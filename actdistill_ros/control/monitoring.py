"""Why the policy node stops the arm, what it logs about it, and what it reports on ``/diagnostics``.

ROS-free: the node feeds in ages and states and publishes what comes out.

* :func:`policy_stop_reason`: the reason the policy can not drive this tick ('' when it can), the
  root cause first: a missing or stale instruction or image, a camera clock ahead of ours, a
  failed inference, then "no prediction yet" / "action chunk used up" -- the latter says *why*
  it ran out (no new image, or inference falling behind), so the first reason logged for a
  camera that stopped names the camera, not the chunk.
* :func:`instruction_problem`: why an arriving instruction is refused (absurd size, control
  characters); checked once on arrival, not at every tick.
* :func:`pose_stop_reason`: with a workspace box, the arm stops without a fresh end-effector pose.
* :class:`StopReporter`: which stop events to log: the start of a stop with its reason, a change
  of reason, a reminder while it lasts and its end; throttled, so a flapping input can not flood
  the log.
* :func:`diagnostic_report`: level, message and key/values of the node's ``DiagnosticStatus``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field

from actdistill_ros.control.safety import InputAge, SafetyCounters

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR, STALE = 0, 1, 2, 3


MAX_INSTRUCTION_BYTES = 4096  # a person's instruction is a sentence or two; 4 KB is a paste gone wrong
_ALLOWED_CONTROL = "\t\n\r"


def instruction_problem(text: str) -> str | None:
    """Why ``text`` is not an instruction a person wrote (None: it may be one). Short, and never
    echoes the text whole (a megabyte paste must not reach the log)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_INSTRUCTION_BYTES:
        return f"{size} bytes > {MAX_INSTRUCTION_BYTES}"
    for i, ch in enumerate(text):
        if ch not in _ALLOWED_CONTROL and unicodedata.category(ch) in ("Cc", "Cs"):
            return f"control character U+{ord(ch):04X} at position {i}"
    return None


def _skew(what: str, age: InputAge, tolerance_s: float) -> str:
    return (f"{what} stamp {age.stamp_ahead_s:.2f} s ahead of this node's clock "
            f"(> stamp_skew_tolerance_s {tolerance_s:.2f} s): clocks out of sync")


def policy_stop_reason(*, instruction_age: InputAge | None, instruction_timeout_s: float,
                       image_age: InputAge | None, image_timeout_s: float, skew_tolerance_s: float,
                       inference_error: str | None, has_prediction: bool, has_step: bool,
                       period_s: float, prediction_age_s: float | None, image_error: str | None = None,
                       instruction_error: str | None = None) -> str:
    """Why the policy can not drive this tick, root cause first; '' when it can.

    ``image_age``: of the newest image received. ``image_error``: why the newest image the model was
    given could not be decoded (None: it could). ``has_step``: the chunk executor has an action for
    this tick. ``prediction_age_s``: time since the newest prediction became ready (None: none yet).
    ``instruction_error``: why the newest instruction was refused on arrival (the arm then stops).
    """
    if instruction_error:
        return instruction_error
    if instruction_age is None:
        return "no instruction"
    if instruction_age.age_s > instruction_timeout_s:
        return f"instruction stale ({instruction_age.age_s:.2f} s > {instruction_timeout_s:.2f} s)"
    if image_age is None:
        return "no image received"
    if image_age.skewed:
        return _skew("image", image_age, skew_tolerance_s)
    if image_age.age_s > image_timeout_s:
        return f"image stale ({image_age.age_s:.2f} s > {image_timeout_s:.2f} s)"
    if image_error:
        return f"image unusable: {image_error}"
    if inference_error:
        return inference_error
    if has_step:
        return ""
    if not has_prediction:
        return "no prediction yet"
    if image_age.age_s > period_s:
        return f"action chunk used up: no new image for {image_age.age_s:.2f} s"
    behind = "" if prediction_age_s is None else f" (last prediction {prediction_age_s:.2f} s ago)"
    return f"action chunk used up: inference falling behind{behind}"


def pose_stop_reason(pose_age: InputAge | None, timeout_s: float, skew_tolerance_s: float,
                     frame_error: str = "") -> str:
    """With a workspace box: why the end-effector pose can not be used ('' when it can)."""
    if pose_age is None:
        return "workspace: no ee_pose received"
    if frame_error:
        return f"workspace: {frame_error}"
    if pose_age.skewed:
        return "workspace: " + _skew("ee_pose", pose_age, skew_tolerance_s)
    if pose_age.age_s > timeout_s:
        return f"workspace: ee_pose stale ({pose_age.age_s:.2f} s > {timeout_s:.2f} s)"
    return ""


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?")


def reason_kind(reason: str) -> str:
    """The reason without its numbers: 'image stale (0.61 s > 0.50 s)' -> 'image stale (# s > # s)'."""
    return _NUMBER.sub("#", reason)


@dataclass
class StopReporter:
    """Decide what to log about safety stops, one call per control tick.

    Logged: the first tick of a stop with its reason; a change of reason (ignoring the numbers in
    it); a reminder every ``repeat_s`` while the stop lasts; the end of a stop. At most one line per
    ``min_interval_s`` (a change that comes sooner is reported with the next allowed line); the
    end of a stop is always logged. Returns ``(level, text)`` or None; level 'warn' or 'info'.
    """

    min_interval_s: float = 1.0
    repeat_s: float = 30.0
    _since: float | None = field(default=None, init=False)
    _kind: str = field(default="", init=False)
    _reason: str = field(default="", init=False)
    _logged_kind: str = field(default="", init=False)
    _last_log: float = field(default=-math.inf, init=False)
    _ticks: int = field(default=0, init=False)

    def update(self, stopped: bool, reason: str, now_s: float) -> tuple[str, str] | None:
        if not stopped:
            if self._since is None:
                return None
            text = (f"safety stop ended after {now_s - self._since:.1f} s ({self._ticks} ticks); "
                    f"last reason: {self._reason}")
            self._since, self._kind, self._reason, self._logged_kind, self._ticks = None, "", "", "", 0
            self._last_log = now_s
            return "info", text
        self._ticks += 1
        self._reason = reason
        kind = reason_kind(reason)
        if self._since is None:
            self._since, self._kind = now_s, kind
            if now_s - self._last_log >= self.min_interval_s:
                self._logged_kind, self._last_log = kind, now_s
                return "warn", f"safety stop: {reason}"
            return None
        self._kind = kind
        if now_s - self._last_log < self.min_interval_s:
            return None
        if kind != self._logged_kind:
            prefix = "safety stop: " if not self._logged_kind else "safety stop, reason now: "
            self._logged_kind, self._last_log = kind, now_s
            return "warn", prefix + reason
        if now_s - self._last_log >= self.repeat_s:
            self._last_log = now_s
            return "warn", f"safety stop for {now_s - self._since:.0f} s: {reason}"
        return None


@dataclass(frozen=True)
class DiagnosticReport:
    level: int
    message: str
    values: tuple[tuple[str, str], ...]


def _age_text(age_s: float) -> str:
    return "none" if age_s < 0 else f"{age_s:.3f}"


def diagnostic_report(*, lifecycle_state: str, mode: str, stopped: bool, stop_reason: str,
                      latency_ms: float | None, layers: str, control_rate_hz: float, target_rate_hz: float,
                      ages: dict[str, float], counters: SafetyCounters, dropped_images: int) -> DiagnosticReport:
    """The policy node's ``DiagnosticStatus``: ERROR while the policy is meant to drive (AUTONOMY)
    but the arm is stopped, WARN for a stop in TELEOP/SHADOW (no human input), an inactive node or a
    control loop below 80% of its rate, OK otherwise. ``ages``: input name -> age [s] (-1: none)."""
    if lifecycle_state != "active":
        level, message = WARN, f"{lifecycle_state}: not commanding the arm"
    elif stopped:
        level = ERROR if mode == "AUTONOMY" else WARN
        message = f"{mode}: stopped: {stop_reason}"
    elif control_rate_hz > 0 and control_rate_hz < 0.8 * target_rate_hz:
        level, message = WARN, f"{mode}: control rate {control_rate_hz:.1f} Hz < {target_rate_hz:.1f} Hz"
    else:
        level, message = OK, f"{mode}: {'policy' if mode == 'AUTONOMY' else 'human'} driving"
    values = [
        ("lifecycle state", lifecycle_state),
        ("mode", mode),
        ("stopped", str(stopped).lower()),
        ("stop reason", stop_reason),
        ("inference latency [ms]", "none" if latency_ms is None else f"{latency_ms:.2f}"),
        ("layers executed", layers),
        ("control rate [Hz]", f"{control_rate_hz:.2f}"),
        ("target rate [Hz]", f"{target_rate_hz:.2f}"),
    ]
    values += [(f"{name} age [s]", _age_text(age)) for name, age in ages.items()]
    values += [(name.replace("_", " "), str(getattr(counters, name)))
               for name in ("linear_step_clamps", "angular_step_clamps", "gripper_clamps", "linear_change_limits",
                            "angular_change_limits", "workspace_clips", "non_finite_commands", "stop_events")]
    values += [("last limit event", counters.last_event), ("dropped images", str(dropped_images))]
    return DiagnosticReport(level, message, tuple(values))
