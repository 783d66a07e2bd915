"""Fresh commands and the latency deadline, on a real node over DDS.

One node process: ``command_timing: prediction`` with a slow control timer (0.2 Hz), so every
command that arrives between two timer ticks can only come from a prediction becoming ready;
``latency_budget_ms`` far below any forward pass, so the deadline must cut the cap to one layer.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from actdistill_ros.control.handoff import Source

from policy_node_helpers import Client, NodeProcess, default_domain_id, stamp_to_ns, unique_namespace

pytestmark = pytest.mark.ros

CHUNK = 6
PARAMS = {
    "control_rate_hz": 0.2,  # a timer tick every 5 s
    "command_timing": "prediction",
    "latency_budget_ms": 0.001,  # no pass can meet it: the cap must fall to one layer
    "image_timeout_s": 10.0,
    "instruction_timeout_s": 600.0,
    "initial_mode": "autonomy",
    "ramp_s": 0.0,
    "warmup_iterations": 1,
    "device": "cpu",
}


@pytest.fixture(scope="module", params=["single_threaded", "events"])
def running(request, tmp_path_factory):
    """The node once on each executor: both must send a command the moment a prediction is ready."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from actdistill_ros.nodes.spin import events_executor_available

    from policy_node_helpers import make_tiny_checkpoint

    if request.param == "events" and not events_executor_available():
        pytest.skip("this rclpy has no rclpy.experimental.EventsExecutor (ROS 2 Kilted or newer)")
    checkpoint = make_tiny_checkpoint(tmp_path_factory.mktemp("student") / "tiny", chunk_size=CHUNK)
    ns = unique_namespace("timing")
    client = Client(ns, default_domain_id())
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = client.node.create_publisher(String, "instruction", latched)
    publisher.publish(String(data="pick up the red block"))
    node = NodeProcess({"checkpoint": str(checkpoint), **PARAMS, "executor": request.param}, ns, default_domain_id())
    try:
        client.spin_until(lambda: client.statuses or not node.alive(), 60.0, "first status")
        assert node.alive(), node.output()
        yield client, node
    finally:
        client.close()
        rc = node.stop()
        assert rc == 0, node.output()


def _policy_actions_with(client: Client, stamp_ns: int) -> list:
    return [m for _, m in client.actions if m.source == Source.POLICY and stamp_to_ns(m.header.stamp) == stamp_ns]


def test_each_prediction_is_commanded_when_ready_not_at_the_next_tick(running):
    client, node = running
    image = np.random.default_rng(0).integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    client.spin_for(0.5)
    start = time.monotonic()
    stamps = []
    for _ in range(4):  # one image at a time, each once the previous one's command arrived
        stamp = client.publish_image(image)
        stamps.append(stamp)
        client.spin_until(lambda s=stamp: _policy_actions_with(client, s), 4.0, "the command of a fresh image")
    elapsed = time.monotonic() - start
    window = client.actions_since(start)
    ticks_possible = int(elapsed / 5.0) + 1  # timer ticks that could have fallen in the window
    # every image got its own command, and nothing waited for a timer tick: 4 commands where the
    # timer alone would have sent at most `ticks_possible`
    assert elapsed < 5.0 * 3, node.output()
    assert len(window) <= len(stamps) + ticks_possible
    for stamp in stamps:
        first = _policy_actions_with(client, stamp)[0]
        assert first.chunk_length == CHUNK - 1  # row 0 of the fresh chunk: the command of this moment
    # status splits each prediction's latency: image stamp <= received <= ready (one clock, this machine)
    client.spin_until(lambda: any(stamp_to_ns(m.prediction_image_stamp) == stamps[-1] for _, m in client.statuses),
                      10.0, "a status naming the last prediction")
    status = next(m for _, m in reversed(client.statuses) if stamp_to_ns(m.prediction_image_stamp) == stamps[-1])
    received, ready = stamp_to_ns(status.prediction_received_stamp), stamp_to_ns(status.prediction_ready_stamp)
    assert stamps[-1] <= received <= ready, (stamps[-1], received, ready)
    assert (ready - received) / 1e6 >= status.inference_latency_ms  # the forward pass runs after reception


def test_latency_budget_cuts_the_cap_and_reports_it(running):
    client, node = running
    image = np.random.default_rng(1).integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    client.stream_images(image, rate_hz=20.0)
    try:
        status = client.spin_until(
            lambda: next((m for _, m in reversed(client.statuses) if m.layer_cap == 1 and m.layers_executed == 1),
                         None), 30.0, "a status with the layer cap at 1")
    finally:
        client.stream_images(None)
    assert status.latency_budget_ms == pytest.approx(0.001)
    assert status.layers_total == 4
    assert "of a full pass (FLOP split)" in node.output()  # the latency model got its fixed costs
    assert status.latency_budget_misses >= 3  # the 3 passes over the budget that make a cut certain
    assert status.latency_p95_ms > 0.001 or status.latency_p95_ms != status.latency_p95_ms  # NaN right after a change
