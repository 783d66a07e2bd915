"""Helpers for the policy node's ROS tests and benchmark: a tiny student checkpoint, image
messages, the node as a subprocess, and an in-process rclpy client that talks to it.

Isolation: every node gets a unique namespace (``/pn_<pid>_<n>``) on top of a test-chosen
``ROS_DOMAIN_ID`` with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, so concurrent test
runs on one machine can not see each other's topics even if their domain ids collide.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def unique_namespace(prefix: str = "pn") -> str:
    return f"/{prefix}_{os.getpid()}_{next(_counter)}"


def default_domain_id() -> int:
    """A domain id from the environment (set by the test session) or derived from the pid."""
    if os.environ.get("ROS_DOMAIN_ID", "").isdigit():
        return int(os.environ["ROS_DOMAIN_ID"])
    return 1 + os.getpid() % 100


def ros_env(domain_id: int, torch_threads: int | None = 1) -> dict[str, str]:
    """Environment for a node subprocess. ``torch_threads`` sets OMP_NUM_THREADS unless the
    caller's environment already does (tests: 1, leaving a core for DDS and the control loop
    on a 2-core machine; ``None``: torch's default)."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    if torch_threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(torch_threads))
    pythonpath = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + pythonpath if pythonpath else "")
    return env


def make_tiny_checkpoint(
    directory: str | Path, preset: str = "test", seed: int = 0, chunk_size: int | None = None
) -> Path:
    """A randomly initialised student (the 'test' preset: 64x64 images, 4 layers) saved to disk."""
    import dataclasses

    import torch

    from actdistill_ros.core.config import MODEL_PRESETS, RouterConfig
    from actdistill_ros.core.model.checkpoint import save_student
    from actdistill_ros.core.model.student import RoutedStudent
    from actdistill_ros.core.model.tiny_vla import TinyVLA

    cfg = MODEL_PRESETS[preset]
    if chunk_size is not None:
        cfg = dataclasses.replace(cfg, chunk_size=chunk_size)
    torch.manual_seed(seed)
    return save_student(RoutedStudent(TinyVLA(cfg), RouterConfig()), directory)


def image_msg(pixels: np.ndarray, encoding: str = "rgb8", stamp: Any = None, frame_id: str = "camera"):
    """A sensor_msgs/Image holding ``pixels`` ([H, W, C] uint8) with a correct step."""
    from sensor_msgs.msg import Image

    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    channels = 1 if pixels.ndim == 2 else int(pixels.shape[2])
    msg.encoding = encoding
    msg.step = msg.width * channels
    msg.data = pixels.tobytes()
    return msg


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class NodeProcess:
    """``python -m actdistill_ros.nodes.policy_node`` in its own process, output in a file."""

    def __init__(
        self,
        params: dict[str, Any],
        namespace: str,
        domain_id: int,
        extra_args: list[str] | None = None,
        torch_threads: int | None = 1,
        log_dir: str | Path | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path = REPO_ROOT,
        launcher: list[str] | None = None,
    ):
        self.namespace = namespace
        self.name = f"policy_node{namespace}"
        self.log_path = Path(tempfile.mkstemp(prefix="policy_node_", suffix=".log", dir=log_dir)[1])
        args = [
            *(launcher or []),  # a command that runs the rest, e.g. under other rights
            sys.executable,
            "-m",
            "actdistill_ros.nodes.policy_node",
            "--ros-args",
            "-r",
            f"__ns:={namespace}",
        ]
        args += extra_args or []  # before the -p overrides: with ROS args the last one wins
        for name, value in params.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            args += ["-p", f"{name}:={value}"]
        self._log = open(self.log_path, "w")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**ros_env(domain_id, torch_threads), **(env or {})},
            cwd=cwd,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        rc = self.proc.poll()
        return f"pid {self.proc.pid}, " + ("running" if rc is None else f"exit code {rc}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Until the node logs that it is configured ("ready:"); fails with its output if it exits
        or takes longer."""
        end = time.monotonic() + timeout
        while "ready:" not in self.output():
            assert self.alive(), f"node exited before it was ready:\n{self.output()}"
            assert time.monotonic() < end, f"node not ready after {timeout:g} s:\n{self.output()}"
            time.sleep(0.1)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5.0)
        self._log.close()
        return self.proc.returncode


class Client:
    """An rclpy node in the test process, in its own context, talking to one policy node.

    Records every ``action``, ``status`` and ``mode_transitions`` message with its arrival
    time (``time.monotonic()``), and can stream images from a timer while spinning.
    """

    def __init__(self, namespace: str, domain_id: int, name: str = "policy_node_test_client"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from actdistill_ros.msg import EndEffectorAction, ModeTransition, PolicyStatus

        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.ns = namespace
        self.context = rclpy.Context()
        kwargs = {}
        try:
            from rclpy.signals import SignalHandlerOptions

            kwargs["signal_handler_options"] = SignalHandlerOptions.NO
        except ImportError:
            pass
        rclpy.init(context=self.context, domain_id=domain_id, **kwargs)
        self.node = Node(name, namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.actions: list[tuple[float, Any]] = []
        self.statuses: list[tuple[float, Any]] = []
        self.transitions: list[tuple[float, Any]] = []
        self._lock = threading.Lock()
        latched = QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.node.create_subscription(EndEffectorAction, "action", self._rec(self.actions), 100)
        self.node.create_subscription(PolicyStatus, "status", self._rec(self.statuses), 100)
        self.node.create_subscription(ModeTransition, "mode_transitions", self._rec(self.transitions), latched)
        self.image_pub = self.node.create_publisher(Image, "image", 10)
        self.published_image_stamps: dict[int, float] = {}  # stamp ns -> monotonic publish time
        self._stream: tuple[np.ndarray, Any] | None = None
        self._stream_timer = None

    def _rec(self, store: list) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            store.append((time.monotonic(), msg))

        return callback

    # -- spinning -----------------------------------------------------------------------------
    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.02, max(0.0, end - time.monotonic())))

    def spin_until(self, predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            self.executor.spin_once(timeout_sec=0.02)
        value = predicate()
        if value:
            return value
        raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")

    # -- instruction --------------------------------------------------------------------------
    def latch_instruction(self, text: str) -> Any:
        """Publish ``text`` once on ``instruction``, latched (reliable, transient local, depth 1), so a
        node that starts later still receives it; -> the publisher (keep it to publish again)."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        publisher = self.node.create_publisher(String, "instruction", latched)
        publisher.publish(String(data=text))
        return publisher

    # -- images -------------------------------------------------------------------------------
    def publish_image(self, pixels: np.ndarray, encoding: str = "rgb8") -> int:
        stamp = self.node.get_clock().now().to_msg()
        self.image_pub.publish(image_msg(pixels, encoding, stamp))
        ns = stamp_to_ns(stamp)
        self.published_image_stamps[ns] = time.monotonic()
        return ns

    def stream_images(self, pixels: np.ndarray | None, rate_hz: float = 20.0) -> None:
        """Publish ``pixels`` at ``rate_hz`` while spinning; ``None`` stops the stream."""
        if self._stream_timer is not None:
            self.node.destroy_timer(self._stream_timer)
            self._stream_timer = None
        if pixels is not None:
            self._stream_timer = self.node.create_timer(1.0 / rate_hz, lambda: self.publish_image(pixels))

    # -- queries ------------------------------------------------------------------------------
    def latest_status(self):
        return self.statuses[-1][1] if self.statuses else None

    def actions_since(self, t: float) -> list[Any]:
        return [m for (at, m) in self.actions if at >= t]

    def statuses_since(self, t: float) -> list[Any]:
        return [m for (at, m) in self.statuses if at >= t]

    def call(self, client: Any, request: Any, timeout: float = 10.0) -> Any:
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f"service {client.srv_name} not available")
        future = client.call_async(request)
        self.spin_until(future.done, timeout, f"response of {client.srv_name}")
        return future.result()

    def close(self) -> None:
        import rclpy

        self.stream_images(None)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


# A camera driver stand-in for a subprocess: publishes WIDTH x HEIGHT rgb8 frames on TOPIC at RATE Hz,
# stamped with the time of capture (now), with the reliable depth-5 QoS of common drivers, until SIGINT.
CAMERA_CODE = """
import sys, numpy as np, rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
width, height, rate, topic = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rclpy.init()
node = rclpy.create_node("hd_camera")
pub = node.create_publisher(Image, topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
frames = [np.random.default_rng(i).integers(0, 255, height * width * 3, dtype=np.uint8).tobytes() for i in range(4)]
msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
count = [0]
def capture():
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.data = frames[count[0] % 4]
    pub.publish(msg)
    count[0] += 1
node.create_timer(1.0 / rate, capture)
print("CAMERA READY", flush=True)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
print(f"published {count[0]} frames", flush=True)
node.destroy_node()
rclpy.try_shutdown()
"""
