"""Raw HD camera images (1280x720 and 1920x1080 rgb8 at 30 Hz) into the policy node over Fast DDS,
with the transport profile shipped in config/fastdds_large_images.xml (shared memory with room for
whole frames), the documented set-up: the camera (a separate process, like a driver) and the node
both use it. The node must act on fresh frames at its control rate, in AUTONOMY, without stopping
for a stale image (allowing a moment of CPU starvation on a shared machine: at most 10% of the ticks;
with Fast DDS's default transports ~94% of the ticks are stops, see the README and
``benchmarks/policy_node_latency.py --camera-process --width 1920 --height 1080 --image-rate 30``).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from actdistill_ros.control.handoff import Mode, Source

from policy_node_helpers import CAMERA_CODE, REPO_ROOT, Client, NodeProcess, default_domain_id, unique_namespace

pytestmark = pytest.mark.ros

PROFILE = REPO_ROOT / "config" / "fastdds_large_images.xml"
PROFILE_ENV = {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE), "FASTRTPS_DEFAULT_PROFILES_FILE": str(PROFILE)}
CONTROL_HZ = 10.0
WINDOW_S = 6.0


@pytest.fixture
def node(tmp_path_factory):
    """A fresh node for each camera: a camera connecting to a node that had another one before was
    seen to pause for seconds first (README, status and limits)."""
    from policy_node_helpers import make_tiny_checkpoint

    checkpoint = make_tiny_checkpoint(tmp_path_factory.mktemp("hd_student") / "tiny", chunk_size=4)
    ns = unique_namespace("hd")
    client = Client(ns, default_domain_id(), name="hd_test_client")
    client.latch_instruction("pick up the red block")
    proc = NodeProcess({"checkpoint": str(checkpoint), "device": "cpu", "warmup_iterations": 1,
                        "control_rate_hz": CONTROL_HZ, "image_timeout_s": 0.5, "initial_mode": "autonomy",
                        "ramp_s": 0.0}, ns, default_domain_id(), env=PROFILE_ENV,
                       log_dir=tmp_path_factory.mktemp("hd_logs"))
    try:
        client.spin_until(lambda: client.statuses or not proc.alive(), 90.0, "the node's first status")
        assert proc.alive(), proc.output()
        yield proc, client
    finally:
        client.close()
        assert proc.stop() == 0, proc.output()


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1920, 1080)])
def test_hd_rgb8_at_30hz_is_acted_on_without_stale_stops(node, ros_process, width, height):
    proc, c = node
    camera = ros_process([sys.executable, "-c", CAMERA_CODE, str(width), str(height), "30", f"{proc.namespace}/image"],
                         name=f"camera_{width}x{height}", env=PROFILE_ENV)
    camera.wait_for_output("CAMERA READY", 60.0)
    # the stream is up when the policy has driven on it for a second (a camera that just connected
    # can pause while DDS matches it: that start-up is not what is measured)
    def steady() -> bool:
        recent = c.statuses_since(time.monotonic() - 1.0)
        return len(recent) >= 8 and all(not s.alarm and s.layers_executed > 0 for s in recent)

    c.spin_until(steady, 60.0, f"the policy driving steadily on {width}x{height} frames")
    t0 = time.monotonic()
    c.spin_for(WINDOW_S)
    statuses = c.statuses_since(t0)
    actions = c.actions_since(t0)
    assert statuses and all(s.mode == Mode.AUTONOMY for s in statuses)
    stops = [s.alarm_reason for s in statuses if s.alarm]
    ages = " ".join(f"{s.image_age_s:.2f}" for s in statuses)
    # The transport delivers the frames: with Fast DDS's defaults ~94% of the ticks are stale stops
    # (README). Zero is what the benchmark shows on a quiet machine; a test on a shared 2-core machine
    # allows a moment of CPU starvation (a few ticks) and still fails on a transport that drops frames.
    assert len(stops) <= 0.1 * len(statuses), f"{len(stops)} stops in {len(statuses)} ticks: {stops[:3]}; " \
                                               f"image ages {ages}"
    assert len(actions) >= 0.7 * CONTROL_HZ * WINDOW_S  # the control loop kept its rate (generous: shared CPU)
    policy = [a for a in actions if a.source in (Source.POLICY, Source.BLEND)]
    assert len(policy) >= 0.9 * len(actions), [a.source for a in actions]
    # fresh frames all along: a new prediction (from a new frame) for most ticks
    frames = {(s.prediction_image_stamp.sec, s.prediction_image_stamp.nanosec) for s in statuses}
    assert len(frames) >= 0.5 * len(statuses), (len(frames), len(statuses))
    assert np.median([s.image_age_s for s in statuses]) < 0.1, ages
    camera.stop()
