"""distill_node over DDS (a real node process, progress received on ``~/progress``), a SIGKILL of the
node mid stage 2 and its restart, bad parameters, and ``launch/distill.launch.py`` (launch_ros is
not installable here: compiled and its arguments checked with ``ast``)."""

from __future__ import annotations

import ast
import json
import py_compile
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from actdistill_ros.distill_job import DistillJobConfig, config_from_mapping

from conftest import spin_until
from launch_helpers import declared_launch_arguments
from test_distill_job import build_demo, check_student_acts, job_mapping, metric_steps, stage2_total

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILE = REPO / "launch" / "distill.launch.py"
EXPECTED_ARGS = {"params_file", "bags", "dataset", "instruction_topic", "instruction", "teacher", "device",
                 "output_dir", "namespace", "log_level"}
NODE = [sys.executable, "-m", "actdistill_ros.nodes.distill_node"]
CHILD_ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


# ------------------------------------------------------------------------------------ launch


def test_launch_file_compiles(tmp_path):
    py_compile.compile(str(LAUNCH_FILE), cfile=str(tmp_path / "distill.launch.pyc"), doraise=True)


def test_launch_file_declares_its_arguments():
    declared, tree = declared_launch_arguments(LAUNCH_FILE)
    assert declared == EXPECTED_ARGS
    text = LAUNCH_FILE.read_text()
    assert 'executable="distill_node"' in text and '"distill.yaml"' in text
    overrides = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "OVERRIDES")
    keys = set(ast.literal_eval(overrides.value))
    assert keys <= set(DistillJobConfig.__dataclass_fields__)
    assert keys <= EXPECTED_ARGS


# ------------------------------------------------------------------------------------ node


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("distill_node_demo"))


def write_params(path: Path, mapping: dict) -> Path:
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": mapping}}))
    return path


class ProgressListener:
    """Collects the JSON events of ``/distill_node/progress``."""

    def __init__(self, make_node) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        self.node = make_node("distill_progress_listener")
        self.events: list[dict] = []
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(String, "/distill_node/progress", self._on_msg, qos)

    def _on_msg(self, msg) -> None:
        self.events.append(json.loads(msg.data))

    def states(self) -> list[tuple[str, str]]:
        return [(e["stage"], e["state"]) for e in self.events]

    def final(self) -> dict | None:
        return next((e for e in self.events if e["stage"] == "job" and e["state"] in ("done", "failed")), None)

    def spin_until_exit(self, proc, timeout: float) -> None:
        """Spin until the node process exits and its last event arrived."""
        assert spin_until(lambda: proc.returncode is not None and self.final() is not None, nodes=[self.node],
                          timeout=timeout), f"node did not finish in {timeout} s:\n{proc.output()}"


@pytest.mark.ros
def test_parameters_are_described_from_the_fields(rclpy_context):
    """`ros2 param describe` shows each key's field description, and a range where it has both bounds."""
    from actdistill_ros.nodes.distill_node import DistillNode

    node = DistillNode(context=rclpy_context)
    try:
        keep, epochs, bags = node.describe_parameters(["keep_ratio", "epochs", "bags"])
        fields = DistillJobConfig.__pydantic_fields__
        assert (keep.description, epochs.description) == (fields["keep_ratio"].description,
                                                          fields["epochs"].description)
        assert [(r.from_value, r.to_value) for r in keep.floating_point_range] == [(0.0, 1.0)]  # gt=0, le=1
        assert not epochs.integer_range and not epochs.floating_point_range  # gt=0 only: no range to announce
        assert "rosbag2" in bags.description
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_node_runs_the_job_and_publishes_progress(demo, tmp_path, ros_process, make_node):
    out = tmp_path / "out"
    params = write_params(tmp_path / "distill.yaml", job_mapping(demo, out))
    listener = ProgressListener(make_node)
    proc = ros_process([*NODE, "--ros-args", "--params-file", str(params)], name="distill_node", env=CHILD_ENV)
    listener.spin_until_exit(proc, timeout=300)
    assert proc.popen.wait(timeout=30) == 0, proc.output()
    final = listener.final()
    assert final["state"] == "done", final
    states = listener.states()
    for expected in [("ingest", "done"), ("probe", "started"), ("probe", "done"), ("student", "started"),
                     ("student", "done"), ("export", "done"), ("report", "done")]:
        assert expected in states, (expected, states)
    running = [e for e in listener.events if e["stage"] == "student" and e["state"] == "running"]
    assert running and running[-1]["step"] == running[-1]["total"] > 0
    report = json.loads((out / "report.json").read_text())
    assert final["flops_ratio"] == report["flops_ratio"]
    assert [Path(s["bag"]).name for s in report["skipped_bags"]] == ["demo_corrupt"]
    check_student_acts(out / "student")


@pytest.mark.ros
def test_node_killed_mid_stage2_resumes(demo, tmp_path, ros_process, make_node):
    out = tmp_path / "out"
    mapping = job_mapping(demo, out, epochs=30)
    params = write_params(tmp_path / "distill.yaml", mapping)
    runs = out / "runs"
    first = ros_process([*NODE, "--ros-args", "--params-file", str(params)], name="distill_node_1", env=CHILD_ENV)
    deadline = time.monotonic() + 240
    while not (runs / "student_state.pt").exists():
        assert first.returncode is None, first.output()
        assert time.monotonic() < deadline, "stage 2 did not checkpoint in time:\n" + first.output()
        time.sleep(0.02)
    first.popen.send_signal(signal.SIGKILL)
    assert first.popen.wait(timeout=30) == -signal.SIGKILL
    assert not (runs / "student_done.json").exists(), "the kill came too late: stage 2 had finished"
    probe_files = {name: (runs / name).read_bytes() for name in ("probe_done.json", "probe_metrics.jsonl")}

    listener = ProgressListener(make_node)
    second = ros_process([*NODE, "--ros-args", "--params-file", str(params)], name="distill_node_2", env=CHILD_ENV)
    listener.spin_until_exit(second, timeout=300)
    assert second.popen.wait(timeout=30) == 0, second.output()
    assert listener.final()["state"] == "done"
    assert ("probe", "skipped") in listener.states()
    total = stage2_total(config_from_mapping(mapping))
    assert json.loads((runs / "student_done.json").read_text())["steps"] == total
    assert metric_steps(runs / "student_metrics.jsonl") == list(range(1, total + 1))
    assert {name: (runs / name).read_bytes() for name in probe_files} == probe_files  # stage 1 not redone
    first_running = next(e for e in listener.events if e["stage"] == "student" and e["state"] == "running")
    assert first_running["step"] > 1  # continued from the checkpoint
    check_student_acts(out / "student")


@pytest.mark.ros
@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["-p", "bogus:=1"], r"unknown config key\(s\) bogus"),
        (["-p", "teacher:=/nonexistent/teacher"], "does not exist"),
    ],
)
def test_node_bad_parameters_exit_2(demo, tmp_path, ros_process, make_node, extra, match):
    params = write_params(tmp_path / "distill.yaml", job_mapping(demo, tmp_path / "out"))
    listener = ProgressListener(make_node)
    proc = ros_process([*NODE, "--ros-args", "--params-file", str(params), *extra], name="distill_node",
                       env=CHILD_ENV)
    listener.spin_until_exit(proc, timeout=120)
    assert proc.popen.wait(timeout=30) == 2, proc.output()
    assert listener.final()["state"] == "failed"
    assert re.search(match, listener.final()["message"]), listener.final()
    assert re.search(match, proc.output())
    assert not (tmp_path / "out" / "runs").exists()


def test_a_ctrl_c_is_remembered_even_when_native_code_turns_it_into_another_error():
    """The job may see a Ctrl-C as a ValueError (raised inside safetensors' reader): the handler
    still raises KeyboardInterrupt and keeps the flag that makes ``main`` exit 130 rather than 2
    (a bad input) whichever error comes out."""
    from actdistill_ros.nodes.distill_node import _Interrupts

    previous = signal.getsignal(signal.SIGINT)
    try:
        interrupts = _Interrupts()
        assert not interrupts.seen
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert interrupts.seen
    finally:
        signal.signal(signal.SIGINT, previous)
