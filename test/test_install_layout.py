"""How the package is installed: the executables CMakeLists.txt installs for colcon are the console
scripts of setup.py; `make setup` lays the venv out as an ament prefix; the launch files declare
their arguments (the real `ros2 launch` runs them in test_ros2_launch.py)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from launch_helpers import declared_launch_arguments

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "actdistill_ros"


def console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = ast.literal_eval(value)
                    return {name.strip(): target.strip().removesuffix(":main")
                            for name, target in (e.split("=") for e in entries)}
    raise AssertionError("setup.py has no console_scripts")


def test_cmake_installs_every_console_script():
    text = (REPO / "CMakeLists.txt").read_text()
    block = re.search(r"set\(ACTDISTILL_EXECUTABLES(.*?)\)", text, re.S).group(1)
    cmake = dict(entry.split("=") for entry in re.findall(r'"([^"]+)"', block))
    scripts = console_scripts()
    assert cmake == scripts
    assert {"policy_node", "distill_node", "sim_node", "teleop_expert_node", "bag_recorder_node"} <= set(cmake)


def test_launch_files_declare_their_arguments():
    expected = {
        "policy.launch.py": {"checkpoint", "device", "params_file", "autostart", "initial_mode", "executor",
                             "namespace", "image_topic", "instruction_topic", "action_topic", "dds_profile",
                             "log_level"},
        "sim.launch.py": {"checkpoint", "device", "initial_mode", "teleop", "real_time_factor", "seed", "episodes",
                          "params_file", "autostart", "namespace", "log_level"},
    }
    for name, arguments in expected.items():
        declared, _ = declared_launch_arguments(REPO / "launch" / name)
        assert declared == arguments, name


@pytest.fixture(scope="module")
def venv() -> Path:
    prefix = Path(sys.prefix)
    if prefix.resolve() != (REPO / ".venv").resolve():
        pytest.skip(f"not running in the project venv ({REPO / '.venv'}, made by `make setup`)")
    return prefix


def test_venv_is_an_ament_prefix(venv):
    assert (venv / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    share = venv / "share" / PACKAGE
    assert (share / "package.xml").read_text() == (REPO / "package.xml").read_text()
    for directory in ("launch", "config"):
        installed = sorted(p.name for p in (share / directory).iterdir())
        assert installed == sorted(p.name for p in (REPO / directory).iterdir() if p.is_file()), directory
    for name in console_scripts():
        executable = venv / "lib" / PACKAGE / name
        assert executable.is_file() and os.access(executable, os.X_OK), executable


def test_activating_the_venv_sets_and_restores_ament_prefix_path(venv):
    script = (f"source {venv}/bin/activate && echo \"in=$AMENT_PREFIX_PATH\" && deactivate "
              "&& echo \"out=${AMENT_PREFIX_PATH-unset}\"")
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "VIRTUAL_ENV")}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert out.stdout.split() == [f"in={venv}", "out=unset"], out.stdout + out.stderr
    env["AMENT_PREFIX_PATH"] = "/opt/ros/underlay"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert out.stdout.split() == [f"in={venv}:/opt/ros/underlay", "out=/opt/ros/underlay"], out.stdout + out.stderr
