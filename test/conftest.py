"""Shared pytest helpers, mostly for tests that talk ROS 2 (``@pytest.mark.ros``).

ROS isolation. At import time (i.e. before any test can call ``rclpy.init``) this file sets
``ROS_DOMAIN_ID`` to a value unique to this pytest process (derived from its pid; under
pytest-xdist one per worker; ``ACTDISTILL_TEST_ROS_DOMAIN_ID`` overrides the base) and
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, so concurrent test runs on one machine do not see
each other's nodes. Subprocesses started with :func:`ros_process` inherit the same environment
(``ros_env``).

Skipping. Tests marked ``ros`` are skipped, with the reason, when ``rclpy`` or the generated
``actdistill_ros.msg`` cannot be imported (a pure-core development environment), unless
``ACTDISTILL_REQUIRE_ROS=1`` (set by ``.ci/run``), where that is a collection error instead.
Test modules marked ``ros`` must therefore import rclpy and ``actdistill_ros.msg`` lazily
(inside tests or fixtures), not at module level. Tests marked ``launch`` need the ROS 2 launch
system and colcon too (``bash scripts/setup_launch_system.sh``); likewise skipped with the reason,
or a collection error with ``ACTDISTILL_REQUIRE_LAUNCH=1`` (``.ci/run``).

Fixtures and helpers (all usable from any test module):

* ``ros_env`` -- the environment dict for ROS subprocesses;
* ``rclpy_context`` -- a fresh, initialised ``rclpy.context.Context`` (shut down afterwards);
* ``make_node(name, **kw)`` -- create nodes in that context (destroyed afterwards);
* ``ros_process(code_or_argv, name=...)`` -- start a node in a subprocess
  (``python -c code`` or an argv list); stopped with SIGINT, then SIGKILL, at teardown; its
  output is attached to the report of a failing test;
* :func:`spin_until` -- spin nodes/an executor until a predicate holds, with a timeout;
* :class:`RosProcess` -- ``wait_for_output``, ``output``, ``stop``;
* ``colcon_install`` -- the package built by colcon in a temporary workspace, once per session
  (its install/; ``ACTDISTILL_COLCON_INSTALL`` names an existing one instead);
* ``ros2_launch(setup, args, name=...)`` -- ``ros2 launch`` after sourcing ``setup``
  (:class:`launch_helpers.LaunchProcess`); whatever is left of it is killed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest

# --------------------------------------------------------------------------------------------
# ROS environment for this test process and its children (set before anything imports rclpy)
# --------------------------------------------------------------------------------------------


def _choose_domain_id() -> int:
    """One domain per pytest process: under pytest-xdist each worker (gw0, gw1, ...) adds its index
    to a base shared by the run (the override, or the controller's pid), so workers never share one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    override = os.environ.get("ACTDISTILL_TEST_ROS_DOMAIN_ID")
    if override:
        return int(override) + index
    return 1 + ((os.getppid() if worker else os.getpid()) + index) % 100  # 1..100: safe ids on Linux


ROS_DOMAIN_ID = _choose_domain_id()
ROS_TEST_ENV = {
    "ROS_DOMAIN_ID": str(ROS_DOMAIN_ID),
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    # Unbuffered children: their output reaches the log file (and failure reports) at once.
    "PYTHONUNBUFFERED": "1",
}
os.environ.update(ROS_TEST_ENV)
os.environ.pop("ROS_STATIC_PEERS", None)

DEFAULT_TIMEOUT_S = 20.0


def ros_unavailable_reason() -> str | None:
    """Why ROS tests cannot run here (None when rclpy and our interfaces import)."""
    if not hasattr(ros_unavailable_reason, "_cached"):
        reason = None
        try:
            import rclpy  # noqa: F401
        except Exception as exc:  # ImportError, or a missing shared library
            reason = f"rclpy is not importable ({type(exc).__name__}: {exc})"
        else:
            try:
                import actdistill_ros.msg  # noqa: F401
                import actdistill_ros.srv  # noqa: F401
            except Exception as exc:
                reason = f"actdistill_ros.msg/.srv are not built ({type(exc).__name__}: {exc})"
        ros_unavailable_reason._cached = reason
    return ros_unavailable_reason._cached


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ros: needs rclpy and the built actdistill_ros.msg interfaces")
    config.addinivalue_line("markers", "launch: needs the ROS 2 launch system and colcon (setup_launch_system.sh)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ros_items = [item for item in items if item.get_closest_marker("ros") or item.get_closest_marker("launch")]
    if ros_items:
        reason = ros_unavailable_reason()
        if reason is not None:
            hint = "run `make setup` (bash scripts/setup_env.sh) and use .venv/bin/python"
            if os.environ.get("ACTDISTILL_REQUIRE_ROS") == "1":
                raise pytest.UsageError(f"ACTDISTILL_REQUIRE_ROS=1 but {reason}; {hint}")
            skip = pytest.mark.skip(reason=f"ROS 2 unavailable: {reason}; {hint}")
            for item in ros_items:
                item.add_marker(skip)
            return
    launch_items = [item for item in items if item.get_closest_marker("launch")]
    if launch_items:
        from launch_helpers import launch_unavailable_reason

        reason = launch_unavailable_reason()
        if reason is not None:
            if os.environ.get("ACTDISTILL_REQUIRE_LAUNCH") == "1":
                raise pytest.UsageError(f"ACTDISTILL_REQUIRE_LAUNCH=1 but {reason}")
            skip = pytest.mark.skip(reason=reason)
            for item in launch_items:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the output of the test's ROS subprocesses to the report of a failing test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        # Anything with .name/.output()/.describe() can be listed in item._ros_processes.
        for proc in getattr(item, "_ros_processes", ()):
            try:
                title = f"ros subprocess {getattr(proc, 'name', proc)} ({proc.describe()})"
                output = proc.output()
            except Exception as exc:  # never let a report hook hide the real failure
                title, output = f"ros subprocess {proc!r}", f"<no output: {exc!r}>"
            report.sections.append((title, output))


# --------------------------------------------------------------------------------------------
# Spinning
# --------------------------------------------------------------------------------------------


def spin_until(
    predicate: Callable[[], bool],
    *,
    nodes: Iterable = (),
    executor=None,
    timeout: float = DEFAULT_TIMEOUT_S,
    step: float = 0.05,
) -> bool:
    """Spin ``executor`` (or a temporary one holding ``nodes``) until ``predicate()`` is true.

    Returns True as soon as the predicate holds, False after ``timeout`` seconds.
    """
    from rclpy.executors import SingleThreadedExecutor

    nodes = list(nodes)
    own = executor is None
    if own:
        if not nodes:
            raise ValueError("spin_until needs nodes or an executor")
        executor = SingleThreadedExecutor(context=nodes[0].context)
        for node in nodes:
            executor.add_node(node)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            executor.spin_once(timeout_sec=step)
    finally:
        if own:
            for node in nodes:
                executor.remove_node(node)
            executor.shutdown(timeout_sec=1.0)


# --------------------------------------------------------------------------------------------
# Subprocess nodes
# --------------------------------------------------------------------------------------------


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default action. A suite started in the background (``cmd &``
    in a script) inherits SIGINT ignored, and ros2 launch keeps an ignored SIGINT: the Ctrl-C a test
    sends would be lost (rclpy nodes install their own handler either way)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class RosProcess:
    """A child process (usually an rclpy node) whose combined output goes to a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: dict[str, str],
        cwd: str | os.PathLike | None = None,
        log_dir: str | os.PathLike | None = None,
        new_session: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        fd, path = tempfile.mkstemp(
            prefix=f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-", suffix=".log", dir=log_dir
        )
        self.log_path = Path(path)
        self._log = os.fdopen(fd, "wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=new_session,
            preexec_fn=_default_sigint,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def describe(self) -> str:
        rc = self.returncode
        return f"pid {self.pid}, " + ("running" if rc is None else f"exit code {rc}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"

    def wait_for_output(self, pattern: str, timeout: float = DEFAULT_TIMEOUT_S) -> re.Match:
        """Wait until the output matches the regex ``pattern``; fail the test otherwise."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output())
            if match:
                return match
            if self.returncode is not None:
                pytest.fail(
                    f"{self.name} exited ({self.describe()}) before printing {pattern!r}:\n{self.output()}"
                )
            if time.monotonic() >= deadline:
                pytest.fail(f"{self.name} did not print {pattern!r} within {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGINT (what Ctrl-C sends a ROS node), then SIGKILL after ``timeout`` s; returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)
        self._log.close()
        return self.popen.returncode


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for ROS subprocesses: this process's, with the test domain settings."""
    env = dict(os.environ)
    env.update(ROS_TEST_ENV)
    return env


@pytest.fixture
def rclpy_context():
    """A fresh rclpy Context, initialised for this test (no signal handlers) and shut down after."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    kwargs = {}
    with contextlib.suppress(ImportError):
        from rclpy.signals import SignalHandlerOptions

        kwargs["signal_handler_options"] = SignalHandlerOptions.NO
    rclpy.init(context=context, domain_id=ROS_DOMAIN_ID, **kwargs)
    try:
        yield context
    finally:
        with contextlib.suppress(Exception):
            context.try_shutdown()


@pytest.fixture
def make_node(rclpy_context):
    """Factory: ``make_node("name", **node_kwargs)`` creates an rclpy Node in the test context."""
    from rclpy.node import Node

    created = []

    def factory(name: str, **kwargs):
        node = Node(name, context=rclpy_context, **kwargs)
        created.append(node)
        return node

    yield factory
    for node in reversed(created):
        with contextlib.suppress(Exception):
            node.destroy_node()


@pytest.fixture
def ros_process(request: pytest.FixtureRequest, ros_env, tmp_path) -> Iterator[Callable[..., RosProcess]]:
    """Factory: start a subprocess node; all of them are stopped at teardown.

    ``ros_process(code, name="pub")`` runs ``sys.executable -c code``; pass a list to run an
    argv instead. ``env`` adds variables, ``cwd`` defaults to the test's tmp_path (so the
    child imports ``actdistill_ros`` as installed, not from the current directory).
    """
    started: list[RosProcess] = []
    request.node._ros_processes = started

    def start(
        code_or_argv: str | Sequence[str],
        *,
        name: str = "node",
        env: dict | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> RosProcess:
        argv = [sys.executable, "-c", code_or_argv] if isinstance(code_or_argv, str) else list(code_or_argv)
        child_env = dict(ros_env)
        child_env.update(env or {})
        proc = RosProcess(argv, name=name, env=child_env, cwd=cwd or tmp_path, log_dir=tmp_path)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory) -> Path:
    """The package built with colcon (what a distro user gets) in a temporary workspace: install/."""
    from launch_helpers import colcon_build

    existing = os.environ.get("ACTDISTILL_COLCON_INSTALL")
    if existing:
        path = Path(existing)
        assert (path / "setup.bash").is_file(), f"ACTDISTILL_COLCON_INSTALL={existing}: no setup.bash there"
        return path
    return colcon_build(tmp_path_factory.mktemp("colcon_ws"))


@pytest.fixture
def ros2_launch(request: pytest.FixtureRequest, ros_env, tmp_path):
    """Factory: ``ros2_launch(setup, ["actdistill_ros", "policy.launch.py", ...], name=...)``."""
    from launch_helpers import LaunchProcess

    started: list = []
    request.node._ros_processes = started

    def start(setup: Path, args: Sequence[str], *, name: str = "ros2_launch", env: dict | None = None):
        proc = LaunchProcess(setup, args, name=name, env={**ros_env, **(env or {})}, log_dir=tmp_path)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.kill_group()
