"""The policy node over real DDS: the node runs in its own process, the test talks to it over
topics, the service and the parameter services, like any other ROS 2 node would.

One node process serves each scenario group (start-up with torch costs seconds on 2 cores):
control at 20 Hz with small timeouts, a tiny random student written by the test.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from actdistill_ros.control.handoff import Mode, Source

from policy_node_helpers import (
    Client,
    NodeProcess,
    default_domain_id,
    image_msg,
    ros_env,
    unique_namespace,
)

# rclpy and the generated interfaces are imported inside fixtures and tests (conftest.py skips
# or errors on ROS tests before they run when they are not importable).
pytestmark = pytest.mark.ros

RATE_HZ = 20.0
PERIOD = 1.0 / RATE_HZ
MAX_LIN, MAX_ANG = 0.004, 0.02
NODE_PARAMS = {
    "control_rate_hz": RATE_HZ,
    "image_timeout_s": 0.4,
    "instruction_timeout_s": 60.0,
    "teleop_timeout_s": 0.3,
    "limits.max_linear_step": MAX_LIN,
    "limits.max_angular_step": MAX_ANG,
    "limits.gripper_min": 0.0,
    "limits.gripper_max": 1.0,
    "deadband": 0.05,
    "ramp_s": 0.2,
    "temporal_ensemble": True,
    "ensemble_k": 0.1,
    "publish_servo_twist": True,
    "servo_scale": 2.0,
    "warmup_iterations": 1,
    "device": "cpu",
}
INSTRUCTION = "pick up the red block"
STARTUP_TIMEOUT = 60.0
CHUNK = 8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from policy_node_helpers import make_tiny_checkpoint

    # chunks of 8 steps = 0.4 s at 20 Hz: slack for inference stalls on a loaded 2-core machine
    return make_tiny_checkpoint(tmp_path_factory.mktemp("student") / "tiny", chunk_size=CHUNK)


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("node_logs")


@pytest.fixture(scope="module")
def domain_id():
    return default_domain_id()


class Running:
    """A node process plus a client in the same namespace."""

    def __init__(self, node: NodeProcess, client: Client):
        from actdistill_ros.srv import SetMode

        self.node, self.client = node, client
        self.set_mode = client.node.create_client(SetMode, "set_mode")
        self.SetMode = SetMode
        self.image = np.random.default_rng(0).integers(0, 255, size=(48, 80, 3), dtype=np.uint8)

    def mode(self, mode: int, reason: str = "test"):
        return self.client.call(self.set_mode, self.SetMode.Request(mode=int(mode), reason=reason))

    def wait_status(self, predicate, timeout: float = 5.0, what: str = "status"):
        since = time.monotonic()

        def check():
            for m in self.client.statuses_since(since):
                if predicate(m):
                    return m
            return None

        return self.client.spin_until(check, timeout, what)


@pytest.fixture(scope="module", params=["single_threaded", "events"])
def running(request, checkpoint, domain_id, log_dir):
    """The main node, once on each executor (every test below runs on both); the instruction is
    published (latched) BEFORE the node starts."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from actdistill_ros.nodes.spin import events_executor_available

    if request.param == "events" and not events_executor_available():
        pytest.skip("this rclpy has no rclpy.experimental.EventsExecutor (ROS 2 Kilted or newer)")

    ns = unique_namespace()
    client = Client(ns, domain_id)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    instruction_pub = client.node.create_publisher(String, "instruction", latched)
    instruction_pub.publish(String(data=INSTRUCTION))
    client.spin_for(0.2)
    node = NodeProcess({"checkpoint": str(checkpoint), **NODE_PARAMS, "executor": request.param}, ns, domain_id,
                       log_dir=log_dir)
    r = Running(node, client)
    r.instruction_pub = instruction_pub
    try:
        client.spin_until(lambda: client.statuses or not node.alive(), STARTUP_TIMEOUT, "first status")
        assert node.alive(), f"node exited at start-up:\n{node.output()}"
        yield r
    finally:
        client.close()
        rc = node.stop()
        log = node.output()
        assert rc == 0, f"node exit status {rc}:\n{log}"
        assert "Traceback" not in log, log


@pytest.fixture(autouse=True)
def _attach_node_output(request):
    """Let conftest's report hook show the node's log when a test fails."""
    if "running" in request.fixturenames:
        request.node._ros_processes = [request.getfixturevalue("running").node]
    yield


def _motion_ok(a) -> bool:
    lin = math.sqrt(a.linear.x**2 + a.linear.y**2 + a.linear.z**2)
    ang = math.sqrt(a.angular.x**2 + a.angular.y**2 + a.angular.z**2)
    values = [a.linear.x, a.linear.y, a.linear.z, a.angular.x, a.angular.y, a.angular.z, a.gripper]
    return (
        all(math.isfinite(v) for v in values)
        and lin <= MAX_LIN * (1 + 1e-5)
        and ang <= MAX_ANG * (1 + 1e-5)
        and 0.0 <= a.gripper <= 1.0
    )


def _is_stop(a) -> bool:
    return a.source == Source.STOP and all(
        v == 0.0 for v in (a.linear.x, a.linear.y, a.linear.z, a.angular.x, a.angular.y, a.angular.z)
    )


def test_latched_instruction_from_before_start_is_received(running):
    status = running.wait_status(lambda m: m.instruction_age_s >= 0.0, 5.0, "instruction received")
    assert status.instruction_age_s < 30.0
    assert status.mode == Mode.TELEOP and status.mode_name == "TELEOP"
    # TELEOP without teleop input: stop with an alarm
    assert status.alarm and "teleop" in status.alarm_reason


def test_autonomy_actions_at_rate_within_limits(running):
    c = running.client
    c.stream_images(running.image, RATE_HZ)
    running.wait_status(lambda m: m.layers_executed > 0 and 0 <= m.image_age_s < 0.3, 10.0, "first inference")
    resp = running.mode(Mode.AUTONOMY, "test autonomy")
    assert resp.success and resp.previous_mode == Mode.TELEOP, resp.message
    running.wait_status(lambda m: m.mode == Mode.AUTONOMY and not m.alarm, 5.0, "autonomy")
    t0 = time.monotonic()
    c.spin_for(2.0)
    window = c.actions_since(t0)
    # rate: 2 s at 20 Hz -> ~40 messages (generous bounds: shared 2-core machine)
    assert 28 <= len(window) <= 46, len(window)
    assert all(_motion_ok(a) for a in window)
    assert all(abs(a.control_period - PERIOD) < 1e-6 for a in window)
    policy = [a for a in window if a.source in (Source.POLICY, Source.BLEND)]
    assert len(policy) >= 0.7 * len(window), [a.source for a in window]
    assert any(a.source == Source.POLICY for a in window)
    # policy commands are stamped with the image they came from
    for a in policy:
        ns = a.header.stamp.sec * 1_000_000_000 + a.header.stamp.nanosec
        assert ns in c.published_image_stamps
    # the rest of the chunk rides along, clamped too (up to CHUNK - 1 future rows)
    a = policy[-1]
    assert a.chunk_length == len(a.chunk) // 7 and 0 < a.chunk_length <= CHUNK - 1
    rows = np.asarray(a.chunk, dtype=np.float64).reshape(-1, 7)
    assert (np.linalg.norm(rows[:, :3], axis=1) <= MAX_LIN * (1 + 1e-5)).all()
    status = c.latest_status()
    assert status.mode == Mode.AUTONOMY and not status.alarm
    assert 0 < status.layers_executed <= status.layers_total == 4
    assert status.inference_latency_ms > 0 and 0 < status.flops_ratio <= 1.05
    assert 14.0 <= status.control_rate_hz <= 26.0
    assert [t.to_mode for _, t in c.transitions][-1] == Mode.AUTONOMY


def test_servo_twist_is_scaled_velocity(running):
    from geometry_msgs.msg import TwistStamped
    from std_msgs.msg import Float64

    c = running.client
    twists, grips = [], []
    c.node.create_subscription(TwistStamped, "servo/delta_twist_cmds", twists.append, 50)
    c.node.create_subscription(Float64, "gripper_command", grips.append, 50)
    c.spin_until(lambda: len(twists) >= 5 and grips, 5.0, "servo twists")
    for t in twists:
        lin = math.sqrt(t.twist.linear.x**2 + t.twist.linear.y**2 + t.twist.linear.z**2)
        assert lin <= MAX_LIN / PERIOD * 2.0 * (1 + 1e-5)  # deltas / period * servo_scale
    assert all(0.0 <= g.data <= 1.0 for g in grips)


def test_human_override_within_one_period(running):
    from geometry_msgs.msg import TwistStamped

    c = running.client
    if c.latest_status().mode != Mode.AUTONOMY:
        assert running.mode(Mode.AUTONOMY).success
    c.stream_images(running.image, RATE_HZ)
    running.wait_status(lambda m: m.mode == Mode.AUTONOMY and not m.alarm, 10.0, "autonomy")
    pub = c.node.create_publisher(TwistStamped, "teleop/twist", 10)
    c.spin_until(lambda: pub.get_subscription_count() > 0, 5.0, "teleop subscriber")
    small = TwistStamped()
    small.twist.linear.x = 0.01  # below the deadband (0.05): no override
    pub.publish(small)
    c.spin_for(0.3)
    assert c.latest_status().mode == Mode.AUTONOMY
    n_transitions = len(c.transitions)
    big = TwistStamped()
    big.header.stamp = c.node.get_clock().now().to_msg()
    big.twist.linear.x = 0.06
    big.twist.angular.z = 0.08  # |twist| = 0.1
    t_pub = time.monotonic()
    pub.publish(big)
    c.spin_until(lambda: len(c.transitions) > n_transitions, 2.0, "override transition")
    t_arrival, tr = c.transitions[-1]
    assert (tr.from_mode, tr.to_mode) == (Mode.AUTONOMY, Mode.TELEOP)
    assert tr.reason == "human override (|twist| 0.1 > deadband 0.05)"
    c.spin_until(lambda: len(c.actions_since(t_pub)) >= 4, 2.0, "actions after the override")
    after = c.actions_since(t_pub)
    # within one period of the node's switch: of the actions arriving after the transition, at
    # most the one tick already in flight is not the human's; from then on only the human drives
    after_switch = c.actions_since(t_arrival)
    first = next(i for i, a in enumerate(after_switch) if a.source == Source.HUMAN)
    assert first <= 1, [a.source for a in after_switch]
    first_human = next(i for i, a in enumerate(after) if a.source == Source.HUMAN)
    assert first_human <= 2, [a.source for a in after]  # + one tick for DDS delivery of the twist
    assert all(a.source == Source.HUMAN for a in after[first_human : first_human + 3])
    h = after[first_human]
    # velocities -> per-step deltas (x period), clamped by norm to 0.004 m: 0.06*0.05 = 0.003 fits
    assert h.linear.x == pytest.approx(0.06 * PERIOD, rel=1e-5)
    assert h.angular.z == pytest.approx(0.08 * PERIOD, rel=1e-5)
    assert h.header.stamp == big.header.stamp
    assert t_arrival - t_pub < 1.0  # generous for a loaded machine; the action check above is exact


def test_shadow_reports_agreement(running):
    from geometry_msgs.msg import TwistStamped

    c = running.client
    c.stream_images(running.image, RATE_HZ)
    resp = running.mode(Mode.SHADOW, "shadow test")
    assert resp.success, resp.message
    pub = c.node.create_publisher(TwistStamped, "teleop/twist", 10)
    c.spin_until(lambda: pub.get_subscription_count() > 0, 5.0, "teleop subscriber")
    twist = TwistStamped()
    twist.twist.linear.z = 0.02
    teleop_timer = c.node.create_timer(PERIOD, lambda: pub.publish(twist))
    status = running.wait_status(
        lambda m: m.mode == Mode.SHADOW and math.isfinite(m.shadow_error), 5.0, "shadow agreement"
    )
    assert status.shadow_error >= 0.0 and -1.0 <= status.shadow_cosine <= 1.0
    t0 = time.monotonic()
    c.spin_for(0.3)
    acts = c.actions_since(t0)
    assert acts and all(a.source == Source.HUMAN for a in acts)
    assert acts[-1].linear.z == pytest.approx(0.02 * PERIOD, rel=1e-5)
    c.node.destroy_timer(teleop_timer)
    assert running.mode(Mode.TELEOP, "back").success


def test_invalid_mode_rejected(running):
    resp = running.mode(7)
    assert not resp.success and "unknown mode" in resp.message


def test_instruction_from_volatile_publisher(running):
    """A plain (volatile) publisher, e.g. `ros2 topic pub`, is heard too (a transient-local
    subscription alone would not match it)."""
    from rclpy.event_handler import PublisherEventCallbacks
    from std_msgs.msg import String

    c = running.client
    # the node's transient-local subscription is (expectedly) incompatible with this publisher
    quiet = PublisherEventCallbacks(incompatible_qos=lambda event: None)
    pub = c.node.create_publisher(String, "instruction", 10, event_callbacks=quiet)
    c.spin_until(lambda: pub.get_subscription_count() > 0, 5.0, "instruction subscriber")
    pub.publish(String(data="place the block in the bowl"))
    end = time.monotonic() + 5.0
    while "instruction: 'place the block in the bowl'" not in running.node.output():
        assert time.monotonic() < end, running.node.output()
        c.spin_for(0.05)
    c.node.destroy_publisher(pub)
    assert "incompatible QoS" not in running.node.output()  # expected mismatch, not a warning
    running.instruction_pub.publish(String(data=INSTRUCTION))
    c.spin_for(0.2)


def test_runtime_budget_parameters(running):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    c = running.client
    cli = c.node.create_client(SetParameters, "policy_node/set_parameters")

    def set_param(name, value):
        if isinstance(value, int):
            pv = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        return c.call(cli, SetParameters.Request(parameters=[Parameter(name=name, value=pv)])).results[0]

    assert set_param("max_layers", 2).successful
    c.stream_images(running.image, RATE_HZ)
    t0 = time.monotonic()
    c.spin_until(lambda: any(0 < m.layers_executed <= 2 for m in c.statuses_since(t0)), 5.0, "capped layers")
    bad = set_param("threshold", 1.5)
    assert not bad.successful and "threshold" in bad.reason
    bad = set_param("max_layers", 99)
    assert not bad.successful and "max_layers" in bad.reason
    assert not set_param("control_rate_hz", 5.0).successful  # read-only at run time
    assert set_param("max_layers", 0).successful
    assert set_param("threshold", 0.4).successful


def test_parameter_descriptors_come_from_the_fields(running):
    """`ros2 param describe` shows each field's description and bounds (PolicyParameters)."""
    from rcl_interfaces.srv import DescribeParameters

    from actdistill_ros.control.node_config import PolicyParameters

    c = running.client
    cli = c.node.create_client(DescribeParameters, "policy_node/describe_parameters")
    names = ["control_rate_hz", "max_layers", "threshold", "limits.gripper_max", "workspace.pose_timeout_s",
             "ensemble_k", "device", "workspace.min"]
    described = {d.name: d for d in c.call(cli, DescribeParameters.Request(names=names)).descriptors}
    fields = PolicyParameters.__pydantic_fields__
    rate = described["control_rate_hz"]
    assert rate.description == fields["control_rate_hz"].description
    assert [(r.from_value, r.to_value) for r in rate.floating_point_range] == [(0.0, 1000.0)]
    assert rate.read_only and not rate.integer_range
    layers = described["max_layers"]
    assert [(r.from_value, r.to_value, r.step) for r in layers.integer_range] == [(0, 1024, 1)]
    assert not layers.read_only and not described["threshold"].read_only  # the run-time budget
    assert [(r.from_value, r.to_value) for r in described["threshold"].floating_point_range] == [(0.0, 1.0)]
    assert [(r.from_value, r.to_value) for r in described["limits.gripper_max"].floating_point_range] == [(0.0, 1.0)]
    assert [(r.from_value, r.to_value) for r in described["ensemble_k"].floating_point_range] == [(-100.0, 100.0)]
    assert "ee_pose" in described["workspace.pose_timeout_s"].description
    for name in ("device", "workspace.min"):  # no bounds, no range
        assert described[name].description and not described[name].floating_point_range, name


def test_bad_images_dropped_node_keeps_running(running):
    import cv2
    from sensor_msgs.msg import CompressedImage

    c = running.client
    c.stream_images(None)
    before = c.latest_status().dropped_images
    good = running.image
    bad = []
    m = image_msg(good, "16UC1")
    m.step = good.shape[1] * 2
    m.data = bytes(good.shape[0] * m.step)
    bad.append(m)  # unknown encoding
    m = image_msg(good)
    m.width = good.shape[1] + 5  # wrong size: step < width*3
    bad.append(m)
    m = image_msg(good)
    m.data = bytes(m.data)[:-100]  # truncated
    bad.append(m)
    compressed_pub = c.node.create_publisher(CompressedImage, "image/compressed", 10)
    c.spin_until(lambda: compressed_pub.get_subscription_count() > 0, 5.0, "compressed subscriber")
    # one at a time: the image subscription keeps only the newest message (depth 1)
    for i, m in enumerate(bad):
        c.image_pub.publish(m)
        running.wait_status(lambda s, n=before + i + 1: s.dropped_images >= n, 5.0, f"drop {i + 1}")
    compressed_pub.publish(CompressedImage(format="tiff", data=b"II*\x00garbage"))  # unknown format
    status = running.wait_status(lambda s: s.dropped_images >= before + 4, 5.0, "dropped images")
    assert status.dropped_images == before + 4
    c.spin_for(0.2)
    assert running.node.alive()
    assert c.latest_status().dropped_images == before + 4
    log = running.node.output()
    assert "dropped image" in log and "unsupported image encoding '16uc1'" in log
    # good images afterwards are still used, raw and compressed
    c.publish_image(good)
    running.wait_status(lambda s: 0 <= s.image_age_s < 0.2, 3.0, "good image accepted")
    c.spin_for(0.3)
    ok, jpeg = cv2.imencode(".jpg", good[:, :, ::-1])
    assert ok
    compressed_pub.publish(CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg.tobytes()))
    running.wait_status(lambda s: 0 <= s.image_age_s < 0.2, 3.0, "compressed image accepted")
    assert c.latest_status().dropped_images == before + 4


def test_instructions_are_checked_on_arrival_absurd_ones_refused(running):
    from std_msgs.msg import String

    c = running.client
    c.stream_images(running.image, RATE_HZ)
    assert running.mode(Mode.AUTONOMY, "instruction test").success
    running.wait_status(lambda m: m.mode == Mode.AUTONOMY and not m.alarm, 10.0, "autonomy")
    # a real sentence with an emoji, far longer than the test student's max_text_tokens (32): it drives
    sentence = ("go to the blue block, please \N{ROBOT FACE} and mind the red one beside it; " * 4)[:230].strip()
    assert 200 < len(sentence.encode()) <= 256
    running.instruction_pub.publish(String(data=sentence))
    c.spin_for(0.5)
    t0 = time.monotonic()
    running.wait_status(lambda m: not m.alarm, 3.0, "a long sentence accepted")
    c.spin_for(0.3)
    assert not any(m.alarm for m in c.statuses_since(t0))
    assert any(a.source == Source.POLICY for a in c.actions_since(t0))
    # a 1 MB paste: refused on arrival, the arm stops, one short log line
    running.instruction_pub.publish(String(data="x" * 1_000_000))
    refused = "instruction refused: 1000000 bytes > 4096"
    running.wait_status(lambda m: m.alarm and m.alarm_reason == refused, 5.0, "refusal alarm")
    t0 = time.monotonic()
    c.spin_for(0.3)
    assert all(_is_stop(a) for a in c.actions_since(t0))
    assert running.node.alive()
    running.instruction_pub.publish(String(data="reach\x1b[31m the red cube"))  # a terminal escape
    running.wait_status(lambda m: m.alarm and "control character U+001B" in m.alarm_reason, 5.0, "refusal alarm")
    running.instruction_pub.publish(String(data=INSTRUCTION))
    status = running.wait_status(lambda m: not m.alarm, 5.0, "recovery")
    assert status.mode == Mode.AUTONOMY
    log = running.node.output()
    assert log.count(refused) == 2 and "x" * 50 not in log, log[-2000:]  # on arrival + the stop reporter
    assert "inference failed" not in log and "this model reads the first" not in log


def test_stale_image_gives_stop_and_alarm(running):
    c = running.client
    if c.latest_status().mode != Mode.AUTONOMY:
        assert running.mode(Mode.AUTONOMY).success
    c.stream_images(running.image, RATE_HZ)
    running.wait_status(lambda m: m.mode == Mode.AUTONOMY and not m.alarm, 10.0, "autonomy")
    c.stream_images(None)
    status = running.wait_status(lambda m: m.alarm and "image stale" in m.alarm_reason, 3.0, "stale alarm")
    assert status.image_age_s > 0.4
    t0 = time.monotonic()
    c.spin_for(0.3)
    acts = c.actions_since(t0)
    assert acts and all(_is_stop(a) for a in acts)
    assert all(a.chunk_length == 0 for a in acts)
    # images again -> the policy drives again
    c.stream_images(running.image, RATE_HZ)
    running.wait_status(lambda m: not m.alarm, 5.0, "recovery")
    c.stream_images(None)


def test_human_gripper_command_overrides_autonomy(running):
    from std_msgs.msg import Float64

    c = running.client
    c.stream_images(running.image, RATE_HZ)
    if c.latest_status().mode != Mode.AUTONOMY:
        assert running.mode(Mode.AUTONOMY, "gripper test").success
    running.wait_status(lambda m: m.mode == Mode.AUTONOMY and not m.alarm, 10.0, "autonomy")
    pub = c.node.create_publisher(Float64, "teleop/gripper", 10)
    c.spin_until(lambda: pub.get_subscription_count() > 0, 5.0, "gripper subscriber")
    commanded = c.actions[-1][1].gripper
    value = 0.0 if commanded > 0.5 else 1.0  # the human moves the gripper by at least 0.5
    n_transitions = len(c.transitions)
    t_pub = time.monotonic()
    pub.publish(Float64(data=value))
    c.spin_until(lambda: len(c.transitions) > n_transitions, 5.0, "override transition")
    tr = c.transitions[-1][1]
    assert (tr.from_mode, tr.to_mode) == (Mode.AUTONOMY, Mode.TELEOP)
    assert tr.reason.startswith("human override (gripper change") and "> gripper deadband 0.05" in tr.reason
    c.spin_until(lambda: any(a.source == Source.HUMAN for a in c.actions_since(t_pub)), 2.0, "a human command")
    human = next(a for a in c.actions_since(t_pub) if a.source == Source.HUMAN)
    assert human.gripper == pytest.approx(value)
    # the same value again (no change by the human) in AUTONOMY: no override
    assert running.mode(Mode.AUTONOMY, "again").success
    running.wait_status(lambda m: m.mode == Mode.AUTONOMY, 5.0, "autonomy again")
    n_transitions = len(c.transitions)
    pub.publish(Float64(data=value))
    c.spin_for(0.5)
    assert len(c.transitions) == n_transitions and c.latest_status().mode == Mode.AUTONOMY
    c.node.destroy_publisher(pub)


def test_diagnostics_on_slash_diagnostics(running):
    from diagnostic_msgs.msg import DiagnosticArray

    c = running.client
    name = f"{running.node.namespace}/policy_node: policy"
    seen = []
    sub = c.node.create_subscription(DiagnosticArray, "/diagnostics",
                                     lambda m: seen.extend(s for s in m.status if s.name == name), 10)
    c.stream_images(running.image, RATE_HZ)
    c.spin_until(lambda: len(seen) >= 2, 10.0, "two diagnostics of the node")
    values = {kv.key: kv.value for kv in seen[-1].values}
    assert values["lifecycle state"] == "active"
    assert values["mode"] == c.latest_status().mode_name
    for key in ("image age [s]", "instruction age [s]", "teleop age [s]", "inference latency [ms]",
                "control rate [Hz]", "linear step clamps", "workspace clips", "stop events"):
        assert key in values, key
    assert 0.0 <= float(values["image age [s]"]) < 1.0
    assert seen[-1].level in (b"\x00", b"\x01", b"\x02")
    c.node.destroy_subscription(sub)


def _stream_stamped(running, offset_s: float):
    """Stream images whose header stamps are ``offset_s`` from now (a lagging or skewed camera)."""
    from rclpy.duration import Duration

    c = running.client
    c.stream_images(None)

    def publish():
        stamp = (c.node.get_clock().now() + Duration(nanoseconds=int(offset_s * 1e9))).to_msg()
        c.image_pub.publish(image_msg(running.image, stamp=stamp))

    return c.node.create_timer(PERIOD, publish)


def test_input_age_comes_from_the_header_stamp(running):
    c = running.client
    if c.latest_status().mode != Mode.AUTONOMY:
        assert running.mode(Mode.AUTONOMY, "stamp test").success
    c.stream_images(running.image, RATE_HZ)
    running.wait_status(lambda m: m.mode == Mode.AUTONOMY and not m.alarm, 10.0, "autonomy")
    # frames arrive fresh but were taken 2 s ago (a lagging driver): stale, the arm stops
    timer = _stream_stamped(running, -2.0)
    status = running.wait_status(lambda m: m.alarm and m.alarm_reason.startswith("image stale"), 5.0, "stale stop")
    assert status.image_age_s > 1.5
    t0 = time.monotonic()
    c.spin_for(0.3)
    assert all(_is_stop(a) for a in c.actions_since(t0))
    c.node.destroy_timer(timer)
    # stamped 5 s in the future: the clocks disagree, the frame is not trusted
    timer = _stream_stamped(running, 5.0)
    status = running.wait_status(lambda m: m.alarm and "ahead of this node's clock" in m.alarm_reason, 5.0,
                                 "clock skew stop")
    assert "stamp_skew_tolerance_s" in status.alarm_reason
    c.node.destroy_timer(timer)
    # now-stamped frames again: the policy drives
    c.stream_images(running.image, RATE_HZ)
    running.wait_status(lambda m: not m.alarm, 5.0, "recovery")


def test_every_stop_is_logged_with_the_right_first_reason(running):
    c = running.client
    if c.latest_status().mode != Mode.AUTONOMY:
        assert running.mode(Mode.AUTONOMY, "log test").success
    c.stream_images(running.image, RATE_HZ)
    running.wait_status(lambda m: m.mode == Mode.AUTONOMY and not m.alarm, 10.0, "autonomy")
    c.spin_for(1.2)  # past the log throttle of the previous stop's end
    start = len(running.node.output())
    c.stream_images(None)  # the camera stops
    running.wait_status(lambda m: m.alarm and "image stale" in m.alarm_reason, 5.0, "stale alarm")
    end = time.monotonic() + 5.0
    while "safety stop" not in running.node.output()[start:]:
        assert time.monotonic() < end, running.node.output()[start:]
        c.spin_for(0.1)
    first = next(line for line in running.node.output()[start:].splitlines() if "safety stop" in line)
    # the first reason names the camera ("no new image" while the chunk runs out, or "image stale")
    assert "safety stop: action chunk used up: no new image" in first or "safety stop: image stale" in first, first
    c.stream_images(running.image, RATE_HZ)
    running.wait_status(lambda m: not m.alarm, 5.0, "recovery")
    end = time.monotonic() + 5.0
    while "safety stop ended after" not in running.node.output()[start:]:
        assert time.monotonic() < end, running.node.output()[start:]
        c.spin_for(0.1)


# -- start-up with the shipped params file, and start-up errors ----------------------------------


def test_params_file_start_and_clean_shutdown(checkpoint, domain_id, log_dir):
    """config/policy.yaml (``/**`` + nested ``limits:``) loads under a namespace; Ctrl-C exits 0.
    Uses the shipped default student when the package has one, else the test's."""
    from actdistill_ros.core.model.checkpoint import default_student_path

    params = {"warmup_iterations": 0}
    if not (default_student_path() / "config.json").is_file():
        params["checkpoint"] = str(checkpoint)
    params_file = Path(__file__).resolve().parent.parent / "config" / "policy.yaml"
    node = NodeProcess(
        params, unique_namespace("yaml"), domain_id, extra_args=["--params-file", str(params_file)], log_dir=log_dir
    )
    try:
        node.wait_ready(STARTUP_TIMEOUT)
        assert "10 Hz, mode TELEOP" in node.output()
    finally:
        rc = node.stop()
    assert rc == 0, node.output()
    assert "Traceback" not in node.output()


# -- start-up errors --------------------------------------------------------------------------


def test_bad_parameters_exit_nonzero_with_clear_message(tmp_path, domain_id):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    cases = {
        "device": ({"device": "tpu"}, "unknown device 'tpu'"),
        "missing": ({"checkpoint": str(tmp_path / "nope")}, "checkpoint not found"),
        "corrupt": ({"checkpoint": str(corrupt)}, "invalid JSON"),
        "rate": ({"control_rate_hz": -1.0}, "'control_rate_hz' must be > 0"),
        "executor": ({"executor": "multi"}, "'multi' is not one of single_threaded, events"),
        "limit": (
            {"limits.max_linear_step": -0.1, "image_timeout_s": 0},
            "'limits.max_linear_step' must be >= 0",
        ),
    }
    procs = {}
    for key, (params, _) in cases.items():
        args = [
            sys.executable,
            "-m",
            "actdistill_ros.nodes.policy_node",
            "--ros-args",
            "-r",
            f"__ns:={unique_namespace('bad')}",
        ]
        for name, value in params.items():
            args += ["-p", f"{name}:={value}"]
        procs[key] = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ros_env(domain_id)
        )
    outputs = {}
    for key, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        outputs[key] = out
        expected = cases[key][1]
        assert proc.returncode == 2, f"{key}: exit {proc.returncode}\n{out}"
        assert "policy_node: error:" in out and expected in out, f"{key}:\n{out}"
        assert "Traceback" not in out, out
    # every problem is listed, not just the first
    assert "'image_timeout_s' must be > 0" in outputs["limit"]
