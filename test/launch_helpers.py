"""Launch files in tests: static checks, a colcon build of the package, and `ros2 launch` processes.

The real launch system (launch, launch_ros, ros2launch, the `ros2` command) and colcon are not
on PyPI: ``bash scripts/setup_launch_system.sh`` installs them from the ros2-cli bundle (CI does,
see .ci/run). Without them the tests that need them are skipped with that hint, or, with
``ACTDISTILL_REQUIRE_LAUNCH=1`` (CI), fail at collection instead.
"""

from __future__ import annotations

import ast
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from conftest import RosProcess

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# what a source checkout of the package holds for colcon (the rest of the repository is not needed)
PACKAGE_FILES = ("package.xml", "CMakeLists.txt", "msg", "srv", "actdistill_ros", "launch", "config",
                 "scripts/launcher.py.in")
SETUP_HINT = ("run `bash scripts/setup_launch_system.sh` (it installs them from the ros2-cli bundle: "
              "../shared/ros2-cli next to the checkout, or ACTDISTILL_ROS2_CLI_DIR)")


def declared_launch_arguments(path: Path) -> tuple[set[str], ast.Module]:
    """Names passed to DeclareLaunchArgument; each must have a description and a default."""
    tree = ast.parse(path.read_text())
    declared = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument":
            first = node.args[0]
            assert isinstance(first, ast.Constant), f"{path.name}: argument name must be a literal"
            declared.add(first.value)
            assert any(kw.arg == "description" for kw in node.keywords), first.value
            assert any(kw.arg == "default_value" for kw in node.keywords), first.value
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions, f"{path.name}: no generate_launch_description()"
    return declared, tree


def colcon_executable() -> str | None:
    for candidate in (os.environ.get("ACTDISTILL_COLCON"), str(REPO / "build" / "colcon-venv" / "bin" / "colcon"),
                      shutil.which("colcon")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch_unavailable_reason() -> str | None:
    """Why `ros2 launch` tests can not run here (None when they can)."""
    if not hasattr(launch_unavailable_reason, "_cached"):
        missing = []
        for module in ("launch", "launch_ros", "ros2launch", "composition_interfaces"):
            try:
                __import__(module)
            except Exception:
                missing.append(module)
        if not (VENV_BIN / "ros2").is_file():
            missing.append(f"the ros2 command ({VENV_BIN / 'ros2'})")
        if colcon_executable() is None:
            missing.append("colcon")
        launch_unavailable_reason._cached = (
            None if not missing else f"the ROS 2 launch system is not installed ({', '.join(missing)} missing); "
            + SETUP_HINT)
    return launch_unavailable_reason._cached


def copy_package_sources(dest: Path) -> Path:
    """The package as a source checkout in ``dest`` (what `git clone` gives a colcon workspace)."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PACKAGE_FILES:
        source = REPO / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    return dest


def colcon_build(workspace: Path, timeout_s: float = 900.0) -> Path:
    """`colcon build --packages-select actdistill_ros` of a copy of the sources in ``workspace``,
    against the ament/rosidl wheels of this venv; returns install/ (with setup.bash)."""
    copy_package_sources(workspace / "src" / "actdistill_ros")
    venv = str(VENV_BIN.parent)
    env = {**os.environ, "AMENT_PREFIX_PATH": venv, "CMAKE_PREFIX_PATH": venv,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    cmd = [colcon_executable(), "build", "--packages-select", "actdistill_ros", "--event-handlers",
           "console_cohesion+", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]
    result = subprocess.run(cmd, cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"colcon build failed (exit {result.returncode}):\n{result.stdout[-6000:]}\n"
                           f"{result.stderr[-3000:]}")
    return workspace / "install"


class LaunchProcess(RosProcess):
    """``ros2 launch <args>`` after sourcing ``setup`` (a colcon install's setup.bash or a venv's
    bin/activate), in a session of its own, output in a log file. ``interrupt()`` is Ctrl-C;
    ``kill_group()`` cleans up whatever is left after a test."""

    def __init__(self, setup: Path, args: Sequence[str], *, name: str, env: dict[str, str], log_dir: Path):
        script = f"source {shlex.quote(str(setup))} && exec ros2 launch {shlex.join(args)}"
        child_env = {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", "RCUTILS_COLORIZED_OUTPUT": "0",
                     "PYTHONUNBUFFERED": "1"}
        child_env.pop("PYTHONPATH", None)
        super().__init__(["bash", "-c", script], name=name, env=child_env, log_dir=log_dir, new_session=True)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s:\n{self.output()}") from None

    def interrupt(self, timeout: float = 60.0, group: bool = False) -> int:
        """Ctrl-C: SIGINT to ros2 launch (which forwards it to its nodes), or with ``group`` to the
        launch and its nodes at once, as a terminal does; the exit status of ros2 launch."""
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.popen.pid, signal.SIGINT)
            else:
                self.popen.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def kill_group(self) -> None:
        """Whatever is left of the launch and its nodes (after a failed test): SIGINT, then SIGKILL."""
        for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _group_alive(self.popen.pid):
                self.popen.poll()
                time.sleep(0.1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5.0)
        self._log.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
