"""The launch files with the real launch system: ``ros2 launch`` of the package as colcon installs it
(built once per session in a temporary workspace, ``source install/setup.bash``), and from the
venv, which `make setup` lays out as an ament prefix too.

Checked like an operator would: the nodes on the graph, parameters, remaps and namespaces in
effect, actions flowing in AUTONOMY, the managed node left unconfigured with ``autostart:=false``,
Ctrl-C giving exit status 0 and no traceback, a node that dies ending the launch, every bad
argument refused with one line. Every node is a real process talking over DDS.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from policy_node_helpers import Client, default_domain_id, make_tiny_checkpoint, unique_namespace

pytestmark = [pytest.mark.launch, pytest.mark.ros]

REPO = Path(__file__).resolve().parent.parent
STARTUP_S = 120.0  # model loading on a loaded 2-core machine
INSTRUCTION = "pick up the red block"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("launch_student") / "tiny", chunk_size=8)


@pytest.fixture
def setup_bash(colcon_install) -> Path:
    return colcon_install / "setup.bash"


def _clean_exit(proc, rc: int) -> str:
    log = proc.output()
    assert rc == 0, f"ros2 launch exit status {rc}:\n{log}"
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert "process has died" not in log, log
    assert "context is invalid" not in log, log
    return log


def _client(ns: str) -> Client:
    return Client(ns, default_domain_id(), name="launch_test_client")


def _wait_for_node(client, name: str, ns: str, timeout: float = STARTUP_S) -> None:
    client.spin_until(lambda: (name, ns) in client.node.get_node_names_and_namespaces(), timeout,
                      f"node {ns}/{name} on the graph")


def _get_parameters(client, node: str, names: list[str]) -> dict:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    cli = client.node.create_client(GetParameters, f"{node}/get_parameters")
    response = client.call(cli, GetParameters.Request(names=names), timeout=30.0)
    return {name: parameter_value_to_python(value) for name, value in zip(names, response.values, strict=True)}


def _lifecycle_state(client, node: str) -> str:
    from lifecycle_msgs.srv import GetState

    cli = client.node.create_client(GetState, f"{node}/get_state")
    return client.call(cli, GetState.Request(), timeout=30.0).current_state.label


def _change_state(client, node: str, label: str) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    cli = client.node.create_client(ChangeState, f"{node}/change_state")
    return client.call(cli, ChangeState.Request(transition=Transition(label=label)), timeout=60.0).success


# -- policy.launch.py ------------------------------------------------------------------------------


def test_policy_launch_params_remaps_namespace_autonomy_and_ctrl_c(setup_bash, ros2_launch, tiny_checkpoint,
                                                                   tmp_path):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from actdistill_ros.msg import EndEffectorAction
    from actdistill_ros.srv import SetMode

    ns = unique_namespace("launch")
    params = tmp_path / "policy.yaml"  # the shipped file plus a changed rate and timeouts
    data = yaml.safe_load((REPO / "config" / "policy.yaml").read_text())
    data["/**"]["ros__parameters"].update(control_rate_hz=20.0, warmup_iterations=1, image_timeout_s=1.0,
                                          limits={"max_linear_step": 0.01})
    params.write_text(yaml.safe_dump(data))
    camera = f"{ns}_camera/image_raw"  # absolute, outside the namespace
    client = _client(ns)
    try:
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        client.node.create_publisher(String, "task/instruction", latched).publish(String(data=INSTRUCTION))
        actions = []
        client.node.create_subscription(EndEffectorAction, "ee_action", lambda m: actions.append((time.monotonic(), m)),
                                        100)
        client.image_pub = client.node.create_publisher(Image, camera, 10)  # what stream_images publishes on
        launch = ros2_launch(setup_bash, [
            "actdistill_ros", "policy.launch.py", f"namespace:={ns}", f"params_file:={params}",
            f"checkpoint:={tiny_checkpoint}", "device:=cpu", f"image_topic:={camera}",
            "instruction_topic:=task/instruction", "action_topic:=ee_action", "log_level:=info",
            "dds_profile:=large_images",
        ], name="policy_launch")
        _wait_for_node(client, "policy_node", ns)
        # the node runs with the package's Fast DDS profile for HD images
        pid = int(launch.wait_for_output(r"\[policy_node-1\]: process started with pid \[(\d+)\]", 10.0).group(1))
        environ = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e)
        assert environ["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("share/actdistill_ros/config/fastdds_large_images.xml")
        values = _get_parameters(client, "policy_node", ["control_rate_hz", "checkpoint", "device",
                                                         "limits.max_linear_step", "autostart"])
        assert values == {"control_rate_hz": 20.0, "checkpoint": str(tiny_checkpoint), "device": "cpu",
                          "limits.max_linear_step": 0.01, "autostart": True}
        assert _lifecycle_state(client, "policy_node") == "active"
        rng = np.random.default_rng(0)
        client.stream_images(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8), 20.0)
        set_mode = client.node.create_client(SetMode, "set_mode")
        response = client.call(set_mode, SetMode.Request(mode=SetMode.Request.MODE_AUTONOMY, reason="launch test"),
                               timeout=30.0)
        assert response.success, response.message
        client.spin_until(lambda: sum(1 for _, a in actions if a.source == EndEffectorAction.SOURCE_POLICY) >= 20,
                          60.0, "20 policy actions on the remapped action topic")
        policy = [a for _, a in actions if a.source == EndEffectorAction.SOURCE_POLICY]
        assert all(math.hypot(a.linear.x, a.linear.y, a.linear.z) <= 0.01 * (1 + 1e-5) for a in policy)
        assert all(abs(a.control_period - 0.05) < 1e-6 for a in policy)  # 20 Hz from the params file
        # the image stamps come back on the actions: the node saw the camera topic
        assert any(a.header.stamp.sec * 10**9 + a.header.stamp.nanosec in client.published_image_stamps
                   for a in policy)
        client.stream_images(None)
        rc = launch.interrupt()
        log = _clean_exit(launch, rc)
        assert "shutting down: sent a zero command" in log
        client.spin_for(1.0)
        last = actions[-1][1]  # the arm's last command is a stop
        assert last.source == EndEffectorAction.SOURCE_STOP
        assert (last.linear.x, last.linear.y, last.linear.z) == (0.0, 0.0, 0.0)
    finally:
        client.close()


def test_policy_launch_autostart_false_leaves_the_managed_node_unconfigured(setup_bash, ros2_launch,
                                                                             tiny_checkpoint):
    """Also the executor argument: the lifecycle services answer on rclpy's EventsExecutor where
    this rclpy has it."""
    from actdistill_ros.msg import EndEffectorAction, PolicyStatus
    from actdistill_ros.nodes.spin import events_executor_available

    executor = "events" if events_executor_available() else "single_threaded"
    ns = unique_namespace("managed")
    client = _client(ns)
    try:
        launch = ros2_launch(setup_bash, ["actdistill_ros", "policy.launch.py", f"namespace:={ns}", "autostart:=false",
                                          f"checkpoint:={tiny_checkpoint}", "device:=cpu", f"executor:={executor}"],
                             name="managed_launch")
        _wait_for_node(client, "policy_node", ns)
        assert _get_parameters(client, "policy_node", ["executor"]) == {"executor": executor}
        assert _lifecycle_state(client, "policy_node") == "unconfigured"
        client.spin_for(1.0)
        assert not client.statuses and not client.actions  # unconfigured: no model, no control loop
        assert _change_state(client, "policy_node", "configure")
        status = client.spin_until(client.latest_status, 30.0, "status of the configured node")
        assert isinstance(status, PolicyStatus) and status.lifecycle_state == "inactive"
        assert not client.actions  # inactive: silent on `action`
        assert _change_state(client, "policy_node", "activate")
        client.spin_until(lambda: len(client.actions) >= 3, 30.0, "actions of the active node")
        assert client.actions[-1][1].source == EndEffectorAction.SOURCE_STOP  # TELEOP, no teleop input
        rc = launch.interrupt()
        _clean_exit(launch, rc)
    finally:
        client.close()


# -- sim.launch.py ---------------------------------------------------------------------------------


def test_sim_launch_runs_n_episodes_from_a_ready_policy_then_ends(setup_bash, ros2_launch):
    from actdistill_ros.msg import EndEffectorAction, SimEpisode

    ns = unique_namespace("sim")
    client = _client(ns)
    episodes: dict[int, list] = {}
    client.node.create_subscription(SimEpisode, "sim/episode",
                                    lambda m: episodes.setdefault(m.episode, []).append(m), 100)
    try:
        launch = ros2_launch(setup_bash, ["actdistill_ros", "sim.launch.py", "episodes:=2", "seed:=5",
                                          "real_time_factor:=2.0", "device:=cpu", f"namespace:={ns}"],
                             name="sim_launch")
        client.spin_until(lambda: launch.returncode is not None, STARTUP_S + 60.0, "the launch to end by itself")
        log = _clean_exit(launch, launch.returncode)
        assert "2 episode(s) done" in log and "starting the first episode" in log
        assert log.index("active: commanding the arm") < log.index("starting the first episode")
        first = episodes[1]
        assert first[0].seed == 5 and first[-1].done and episodes[2][0].seed == 6
        moved = math.dist((first[0].grip_position.x, first[0].grip_position.y, first[0].grip_position.z),
                          (first[-1].grip_position.x, first[-1].grip_position.y, first[-1].grip_position.z))
        assert moved > 0.03, f"the policy did not drive the first episode (moved {moved:.3f} m)"
        policy = [a for _, a in client.actions if a.source in (EndEffectorAction.SOURCE_POLICY,
                                                               EndEffectorAction.SOURCE_BLEND)]
        assert policy, "no policy command reached the namespace's action topic"
        assert first[-1].rejected_commands == 0
    finally:
        client.close()


def test_sim_launch_ctrl_c_with_teleop_exits_0_without_traceback(setup_bash, ros2_launch):
    from actdistill_ros.msg import SimEpisode

    ns = unique_namespace("simc")
    client = _client(ns)
    steps = []
    client.node.create_subscription(SimEpisode, "sim/episode", steps.append, 100)
    try:
        launch = ros2_launch(setup_bash, ["actdistill_ros", "sim.launch.py", "teleop:=true", "initial_mode:=teleop",
                                          "device:=cpu", f"namespace:={ns}", "log_level:=warn"], name="sim_ctrl_c")
        client.spin_until(lambda: len(steps) >= 5, STARTUP_S, "five simulator steps")
        rc = launch.interrupt(group=True)  # Ctrl-C in a terminal: the launch and every node get SIGINT
        log = _clean_exit(launch, rc)
        assert log.count("process has finished cleanly") == 3, log  # sim, policy, teleop
    finally:
        client.close()


def test_sim_launch_ends_when_the_policy_node_fails(setup_bash, ros2_launch, tmp_path):
    corrupt = tmp_path / "corrupt_student"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    ns = unique_namespace("simf")
    launch = ros2_launch(setup_bash, ["actdistill_ros", "sim.launch.py", f"checkpoint:={corrupt}", "device:=cpu",
                                      f"namespace:={ns}"], name="sim_fail")
    rc = launch.wait(STARTUP_S)
    log = launch.output()
    assert rc == 1, log
    assert "policy_node: error: parameter 'checkpoint': cannot load" in log
    assert "exited with status 2" in log  # the launch names the node and why it ends
    assert "[sim_node-1]: process has finished cleanly" in log  # the simulator did not run on alone


# -- bad launch arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("launch_file", "argument", "expected"),
    [
        ("policy.launch.py", "log_level:=verbose",
         "launch argument 'log_level': 'verbose' is not one of debug, info, warn, error, fatal"),
        ("policy.launch.py", "device:=tpu",
         "launch argument 'device': 'tpu' is not a device: auto, cpu, cuda or cuda:N"),
        ("policy.launch.py", "autostart:=maybe", "launch argument 'autostart': 'maybe' is not a boolean"),
        ("policy.launch.py", "executor:=multi",
         "launch argument 'executor': 'multi' is not one of single_threaded, events"),
        ("policy.launch.py", "dds_profile:=/nonexistent.xml",
         "launch argument 'dds_profile': '/nonexistent.xml' is not '' (the environment's), large_images or"),
        ("policy.launch.py", "checkpoint:=/nonexistent/student",
         "launch argument 'checkpoint': '/nonexistent/student' is not an existing directory"),
        ("sim.launch.py", "seed:=abc", "launch argument 'seed': 'abc' is not an integer >= 0"),
        ("sim.launch.py", "real_time_factor:=-1",
         "launch argument 'real_time_factor': '-1' is not a finite number > 0"),
        ("sim.launch.py", "initial_mode:=auto",
         "launch argument 'initial_mode': 'auto' is not one of teleop, shadow, autonomy"),
        ("sim.launch.py", "namespace:=arm 1", "launch argument 'namespace': 'arm 1' is not a ROS namespace"),
        ("distill.launch.py", "log_level:=verbose", "launch argument 'log_level': 'verbose' is not one of"),
        ("distill.launch.py", "params_file:=/nonexistent.yaml",
         "launch argument 'params_file': '/nonexistent.yaml' is not an existing file"),
    ],
)
def test_bad_launch_argument_gives_one_line(setup_bash, ros2_launch, launch_file, argument, expected):
    launch = ros2_launch(setup_bash, ["actdistill_ros", launch_file, argument], name=f"bad_{launch_file}")
    rc = launch.wait(60.0)
    log = launch.output()
    assert rc == 1, log
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and expected in errors[0], log
    assert "Traceback" not in log and "process started" not in log, log


# -- distill.launch.py ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def distill_demo(tmp_path_factory):
    from test_distill_job import build_demo

    return build_demo(tmp_path_factory.mktemp("launch_distill_demo"))


def _distill_params(demo, path: Path, out: Path, **overrides) -> Path:
    from test_distill_job import job_mapping

    mapping = job_mapping(demo, out, **overrides)
    mapping.pop("output_dir")  # given as a launch argument
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": mapping}}))
    return path


def test_distill_launch_runs_the_job_in_its_namespace_and_ends(setup_bash, ros2_launch, distill_demo, tmp_path):
    import json

    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    ns = unique_namespace("distill")
    out = tmp_path / "out"
    params = _distill_params(distill_demo, tmp_path / "distill.yaml", out)
    client = _client(ns)
    events = []
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    client.node.create_subscription(String, "distill_node/progress", lambda m: events.append(json.loads(m.data)), qos)
    try:
        launch = ros2_launch(setup_bash, ["actdistill_ros", "distill.launch.py", f"params_file:={params}",
                                          f"output_dir:={out}", f"namespace:={ns}"], name="distill_launch")
        client.spin_until(lambda: launch.returncode is not None, 600.0, "the distillation launch to end")
        log = _clean_exit(launch, launch.returncode)
        client.spin_until(lambda: any(e["stage"] == "job" and e["state"] == "done" for e in events), 30.0,
                          "the job's done event in the namespace")
        assert (out / "student" / "config.json").is_file() and (out / "report.json").is_file()
        assert "distill_node-1]: process has finished cleanly" in log
    finally:
        client.close()


def test_distill_launch_ctrl_c_is_a_resumable_interruption(setup_bash, ros2_launch, distill_demo, tmp_path):
    out = tmp_path / "out"
    params = _distill_params(distill_demo, tmp_path / "distill.yaml", out, epochs=50)
    launch = ros2_launch(setup_bash, ["actdistill_ros", "distill.launch.py", f"params_file:={params}",
                                      f"output_dir:={out}"], name="distill_ctrl_c")
    launch.wait_for_output(r"distilling into", STARTUP_S)
    rc = launch.interrupt()
    log = launch.output()
    assert rc == 0, log
    assert "Traceback" not in log, log
    assert "interrupted (exit status 130): relaunch with the same output_dir to resume" in log


# -- the venv as an ament prefix -----------------------------------------------------------------------


def test_ros2_launch_from_the_venv_prefix(ros2_launch, tiny_checkpoint):
    """`make setup` lays the venv out as an ament prefix: with the launch system installed there,
    `source .venv/bin/activate && ros2 launch actdistill_ros ...` works without colcon."""
    from actdistill_ros.msg import PolicyStatus

    ns = unique_namespace("venv")
    client = _client(ns)
    try:
        launch = ros2_launch(Path(sys.prefix) / "bin" / "activate",
                             ["actdistill_ros", "policy.launch.py", f"namespace:={ns}",
                              f"checkpoint:={tiny_checkpoint}", "device:=cpu"], name="venv_launch")
        status = client.spin_until(client.latest_status, STARTUP_S, "status from the venv-launched node")
        assert isinstance(status, PolicyStatus) and status.lifecycle_state == "active"
        rc = launch.interrupt()
        _clean_exit(launch, rc)
    finally:
        client.close()
    # what ros2 found: the package in the venv prefix, with every executable in lib/actdistill_ros/
    script = (f"source {sys.prefix}/bin/activate && ros2 pkg prefix actdistill_ros"
              " && ros2 pkg executables actdistill_ros")
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH")}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == sys.prefix
    executables = {line.split()[1] for line in lines[1:] if line.strip()}
    assert executables == {"policy_node", "distill_node", "sim_node", "teleop_expert_node", "bag_recorder_node",
                           "actdistill"}
