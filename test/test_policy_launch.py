"""launch/policy.launch.py: launch/launch_ros are not installable here, so the file is compiled,
its launch arguments are checked with ``ast``, and its node set-up runs against stand-ins of the
few launch APIs it uses (restored after the test)."""

import importlib.util
import py_compile
import sys
import types
from pathlib import Path

from launch_helpers import declared_launch_arguments

LAUNCH_FILE = Path(__file__).resolve().parent.parent / "launch" / "policy.launch.py"
SIM_LAUNCH_FILE = LAUNCH_FILE.with_name("sim.launch.py")
EXPECTED_ARGS = {
    "checkpoint",
    "device",
    "params_file",
    "namespace",
    "image_topic",
    "instruction_topic",
    "action_topic",
    "log_level",
}


def test_compiles(tmp_path):
    py_compile.compile(str(LAUNCH_FILE), cfile=str(tmp_path / "policy.launch.pyc"), doraise=True)


def test_declares_launch_arguments():
    declared, _ = declared_launch_arguments(LAUNCH_FILE)
    assert declared == EXPECTED_ARGS


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _load_with_stand_ins(monkeypatch, share_dir: str, launch_file: Path = LAUNCH_FILE):
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda entities: list(entities)
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = type("DeclareLaunchArgument", (_Recorder,), {})
    actions.OpaqueFunction = type("OpaqueFunction", (_Recorder,), {})
    substitutions = types.ModuleType("launch.substitutions")

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    substitutions.LaunchConfiguration = LaunchConfiguration
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorder,), {})
    ament = types.ModuleType("ament_index_python")
    packages = types.ModuleType("ament_index_python.packages")
    packages.get_package_share_directory = lambda pkg: f"{share_dir}/{pkg}"
    for name, mod in {
        "launch": launch,
        "launch.actions": actions,
        "launch.substitutions": substitutions,
        "launch_ros": launch_ros,
        "launch_ros.actions": ros_actions,
        "ament_index_python": ament,
        "ament_index_python.packages": packages,
    }.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location(f"{launch_file.stem.replace('.', '_')}_under_test", launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _context(description, **given):
    ctx = {
        d.args[0]: d.kwargs["default_value"]
        for d in description
        if type(d).__name__ == "DeclareLaunchArgument"
    }
    ctx.update(given)
    return ctx


def test_node_setup_defaults(monkeypatch):
    module = _load_with_stand_ins(monkeypatch, "/opt/share")
    description = module.generate_launch_description()
    ctx = _context(description)
    assert ctx["params_file"] == "/opt/share/actdistill_ros/config/policy.yaml"
    opaque = [d for d in description if type(d).__name__ == "OpaqueFunction"][0]
    (node,) = opaque.kwargs["function"](ctx)
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["name"]) == ("actdistill_ros", "policy_node", "policy_node")
    assert kw["namespace"] == ""
    assert kw["parameters"] == ["/opt/share/actdistill_ros/config/policy.yaml"]  # no overrides
    assert kw["remappings"] == []
    assert kw["arguments"] == ["--ros-args", "--log-level", "info"]


def test_node_setup_overrides_and_remaps(monkeypatch):
    module = _load_with_stand_ins(monkeypatch, "/opt/share")
    description = module.generate_launch_description()
    ctx = _context(
        description,
        checkpoint="/ckpt/student",
        device="cuda:0",
        namespace="arm1",
        image_topic="/cam/image_raw",
        instruction_topic="/task/instruction",
        action_topic="ee_action",
        log_level="debug",
        params_file="/tmp/p.yaml",
    )
    opaque = [d for d in description if type(d).__name__ == "OpaqueFunction"][0]
    (node,) = opaque.kwargs["function"](ctx)
    kw = node.kwargs
    assert kw["namespace"] == "arm1"
    assert kw["parameters"] == ["/tmp/p.yaml", {"checkpoint": "/ckpt/student", "device": "cuda:0"}]
    assert kw["remappings"] == [
        ("image", "/cam/image_raw"),
        ("image/compressed", "/cam/image_raw/compressed"),
        ("instruction", "/task/instruction"),
        ("action", "ee_action"),
    ]
    assert kw["arguments"][-1] == "debug"


def test_sim_launch_wires_the_sim_to_the_policy_node_on_simulated_time(monkeypatch, tmp_path):
    py_compile.compile(str(SIM_LAUNCH_FILE), cfile=str(tmp_path / "sim.launch.pyc"), doraise=True)
    module = _load_with_stand_ins(monkeypatch, "/opt/share", SIM_LAUNCH_FILE)
    description = module.generate_launch_description()
    opaque = [d for d in description if type(d).__name__ == "OpaqueFunction"][0]
    sim, policy = opaque.kwargs["function"](_context(description))
    assert (sim.kwargs["executable"], policy.kwargs["executable"]) == ("sim_node", "policy_node")
    assert policy.kwargs["remappings"] == [("image", "camera/image_raw")]
    file_params, overrides = policy.kwargs["parameters"]
    assert file_params == "/opt/share/actdistill_ros/config/policy.yaml"
    assert overrides["use_sim_time"] is True and overrides["initial_mode"] == "autonomy"
    assert "checkpoint" not in overrides  # the shipped student
    assert sim.kwargs["parameters"] == [{"real_time_factor": 1.0, "initial_seed": 0}]

    nodes = opaque.kwargs["function"](_context(description, teleop="true", checkpoint="/ckpt/teacher"))
    assert [n.kwargs["executable"] for n in nodes] == ["sim_node", "policy_node", "teleop_expert_node"]
    assert nodes[1].kwargs["parameters"][1]["checkpoint"] == "/ckpt/teacher"
    setup_py = (LAUNCH_FILE.parent.parent / "setup.py").read_text()
    for node in nodes:
        assert f"{node.kwargs['executable']} = actdistill_ros.nodes." in setup_py
