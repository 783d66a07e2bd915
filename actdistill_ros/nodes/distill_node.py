"""The distillation node: a one-shot job (ingest -> [teacher] -> stage 1 -> stage 2 -> export ->
report) run from ROS 2 parameters, reporting progress on a topic; it exits when the job ends.

Run::

    distill_node --ros-args --params-file config/distill.yaml \\
        -p bags:=/data/demos -p instruction_topic:=/instruction -p output_dir:=/data/distill_run1

or ``ros2 launch actdistill_ros distill.launch.py bags:=... output_dir:=...``. The parameters are
the keys of :class:`~actdistill_ros.distill_job.DistillJobConfig` (the same file works with
``actdistill distill --config``); nested ``distill.*``/``hf_teacher.*``/``teacher_training.*`` keys come from the
params file or ``-p distill.loss.gamma:=3.0``. An undeclared parameter is an error, as an unknown
key is for the CLI.

Topic ``~/progress`` (std_msgs/String, reliable, transient-local, depth 100): one JSON object per
event, ``{"stage", "state", "stage_index", "num_stages", "fraction", "step", "total", ...}`` (see
``actdistill_ros.distill_job.job``); the last one is ``{"stage": "job", "state": "done", ...}`` with
the headline numbers, or ``"state": "failed"`` with the message. The training stages also draw a
progress bar on a terminal.

Resuming: killed (Ctrl-C, SIGKILL, power loss), the node restarted with the same ``output_dir``
continues from the last checkpoint without redoing finished stages.

Exit status: 0 done, 1 the job failed, 2 invalid configuration or input (bad parameter, missing
bags, unusable teacher...), 130 interrupted (SIGINT).
"""

from __future__ import annotations

import array
import contextlib
import json
import signal
import sys
import threading
import time
import traceback
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from actdistill_ros.core.typed_config import ConfigError, unflatten
from actdistill_ros.distill_job import USER_ERRORS, DistillJobConfig, config_from_mapping, run_distill_job
from actdistill_ros.distill_job.config import field_docs
from actdistill_ros.nodes.parameters import field_descriptor

NODE_NAME = "distill_node"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
NESTED_KEYS = ("distill", "hf_teacher", "teacher_training")  # only as dotted parameters (distill.loss.gamma)
ROS_OWN_PARAMETERS = {"use_sim_time", "start_type_description_service"}
LOG_EVERY_S = 5.0  # console lines for "running" events (the topic gets every event)
# After the last event: until the node is DISCOVERY_S old, wait for a subscriber to be matched (one
# started with the node may still be discovering it: Fast DDS announces a participant every 3 s, and
# a lost first announcement on a loaded machine costs one period), then up to ACK_S for the
# subscribers to acknowledge every event. A job that ran longer than that does not wait.
DISCOVERY_S = 7.0
ACK_S = 2.0
PROGRESS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


class DistillNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        # Parameters from the params file / -p are declared as given (any type, nested keys as
        # dotted names); the simple keys not given are declared with their defaults, for `ros2 param`.
        super().__init__(NODE_NAME, automatically_declare_parameters_from_overrides=True, **node_kwargs)
        self._started = time.monotonic()
        for name, _type, default, text in field_docs():
            if name in NESTED_KEYS or self.has_parameter(name):
                continue
            self.declare_parameter(name, default, field_descriptor(DistillJobConfig.__pydantic_fields__[name],
                                                                   default, text))
        self._publisher = self.create_publisher(String, "~/progress", PROGRESS_QOS)
        self._last_log = 0.0
        self._lock = threading.Lock()

    def read_config(self) -> DistillJobConfig:
        """The job config from this node's parameters; ConfigError names an unknown parameter."""
        values = {
            name: list(param.value) if isinstance(param.value, (array.array, tuple)) else param.value
            for name, param in self.get_parameters_by_prefix("").items()
            if name not in ROS_OWN_PARAMETERS
        }
        return config_from_mapping(unflatten(values))

    def flush_progress(self) -> None:
        """Give subscribers the chance to receive the last events before the node goes away."""
        deadline = self._started + DISCOVERY_S
        while self._publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._publisher.get_subscription_count():
            self._publisher.wait_for_all_acked(Duration(seconds=ACK_S))

    def publish_progress(self, event: dict) -> None:
        """Progress callback of the job (called from the job's threads)."""
        msg = String()
        msg.data = json.dumps(event, default=str)
        with self._lock:
            self._publisher.publish(msg)
            self._log_event(event)

    def _log_event(self, event: dict) -> None:
        stage, state = event.get("stage"), event.get("state")
        if state == "running":
            now = time.monotonic()
            if now - self._last_log < LOG_EVERY_S:
                return
            self._last_log = now
        text = f"{stage}: {state}"
        if event.get("total"):
            text += f" {event.get('step', 0)}/{event['total']}"
        elif "fraction" in event and state == "running":
            text += f" {100 * event['fraction']:.0f}%"
        if event.get("message"):
            text += f" ({event['message']})"
        if stage == "job" and state == "done":
            text += " " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in event.items() if k in ("student_checkpoint", "flops_ratio", "speedup",
                                                                       "executed_layer_fraction",
                                                                       "action_error_ratio"))
        (self.get_logger().error if state == "failed" else self.get_logger().info)(text)


def _init_rclpy(args: list[str] | None) -> None:
    """rclpy without its SIGINT handler: Ctrl-C raises KeyboardInterrupt in the job (main) thread."""
    try:
        from rclpy.signals import SignalHandlerOptions
    except ImportError:  # older rclpy
        rclpy.init(args=args)
        return
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


class _Interrupts:
    """Remembers a Ctrl-C: one that lands inside native code (safetensors reading a file, a torch
    kernel) can come back out as that code's own error (a ValueError naming the file), and must
    still end the job as an interruption, not as a bad input (seen in CI: SIGINT during the
    teacher's loading was reported as an unreadable weight file)."""

    def __init__(self) -> None:
        self.seen = False
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    _init_rclpy(args)
    interrupts = _Interrupts()
    node: DistillNode | None = None
    executor: SingleThreadedExecutor | None = None
    spinner: threading.Thread | None = None
    code = EXIT_FAILED
    try:
        node = DistillNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)  # serves parameter services while the job runs in this thread
        spinner = threading.Thread(target=executor.spin, name="distill_node_spin", daemon=True)
        spinner.start()
        try:
            cfg = node.read_config()
        except ConfigError as exc:
            node.publish_progress({"stage": "job", "state": "failed", "message": f"invalid configuration: {exc}"})
            print(f"{NODE_NAME}: invalid configuration: {exc}", file=sys.stderr)
            code = EXIT_CONFIG_ERROR
        else:
            node.get_logger().info(f"distilling into {cfg.output_dir} (rerun with the same output_dir to resume)")
            run_distill_job(cfg, progress=node.publish_progress)
            code = EXIT_OK
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except USER_ERRORS as exc:  # the job already published a "failed" event
        if not interrupts.seen:  # else it is the interrupt in another error's clothes (_Interrupts)
            print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        code = EXIT_INTERRUPTED if interrupts.seen else EXIT_CONFIG_ERROR
    except Exception as exc:
        if not interrupts.seen:
            traceback.print_exc()
            print(f"{NODE_NAME}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = EXIT_INTERRUPTED if interrupts.seen else EXIT_FAILED
    finally:
        if code == EXIT_INTERRUPTED:
            print(f"{NODE_NAME}: interrupted; rerun with the same output_dir to resume", file=sys.stderr)
        if node is not None and code != EXIT_INTERRUPTED:
            with contextlib.suppress(KeyboardInterrupt):
                node.flush_progress()
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)  # ends executor.spin() in the spin thread ...
        if spinner is not None:
            # ... which must be over before the node and the context go: a thread still inside the
            # middleware when the interpreter exits aborts the process ("terminate called ...", -6)
            spinner.join(timeout=10.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
