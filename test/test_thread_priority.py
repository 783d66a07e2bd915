"""Real-time scheduling of the policy node's inference thread (``inference_priority``): the
thread gets it, no other thread does, and a machine that does not allow it gets a clear error.
Its kernel name: set on that thread only, cut to the kernel's 15 characters."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from actdistill_ros.core.typed_config import ConfigError
from actdistill_ros.nodes.thread_priority import fifo_priority, name_thread, set_fifo_priority

from policy_node_helpers import NodeProcess, default_domain_id, make_tiny_checkpoint, unique_namespace

PRIORITY = 7
WITHOUT_RIGHTS = [sys.executable, str(Path(__file__).resolve().parent / "without_realtime_rights.py")]
STARTUP_TIMEOUT = 120.0


def _realtime_allowed(priority: int = PRIORITY) -> bool:
    """Try it on a short-lived thread (the answer depends on capabilities and limits, not on uid)."""
    allowed = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            allowed.append(True)
        except PermissionError:
            allowed.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return allowed[0]


needs_realtime = pytest.mark.skipif(
    sys.platform != "linux" or not _realtime_allowed(),
    reason="this machine does not let the tests use SCHED_FIFO (no CAP_SYS_NICE, rtprio limit below 7)")


@pytest.mark.skipif(sys.platform != "linux", reason="kernel thread names are read from /proc (Linux)")
def test_the_thread_gets_its_kernel_name_and_no_other_thread_does():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()

    def kernel_name(native_id: int) -> str:
        return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()

    try:
        own_name = kernel_name(threading.get_native_id())
        assert name_thread(thread.native_id, "a_name_longer_than_15")
        assert kernel_name(thread.native_id) == "a_name_longer_t"
        assert kernel_name(threading.get_native_id()) == own_name
    finally:
        stop.set()
        thread.join()
    assert not name_thread(thread.native_id, "gone")  # the thread ended: no such task


@needs_realtime
def test_the_thread_gets_the_priority_and_no_other_thread_does():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        set_fifo_priority(thread.native_id, PRIORITY)
        assert fifo_priority(thread.native_id) == PRIORITY
        assert fifo_priority(threading.get_native_id()) == 0
    finally:
        stop.set()
        thread.join()


@pytest.mark.skipif(sys.platform != "linux", reason="real-time scheduling is Linux only")
def test_without_the_right_it_is_an_error_naming_the_parameter_and_the_fix():
    code = ("import threading\n"
            "from actdistill_ros.nodes.thread_priority import set_fifo_priority\n"
            "from actdistill_ros.core.typed_config import ConfigError\n"
            "try:\n"
            f"    set_fifo_priority(threading.get_native_id(), {PRIORITY})\n"
            "except ConfigError as exc:\n"
            "    print('ConfigError:', exc)\n")
    out = subprocess.run([*WITHOUT_RIGHTS, sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ConfigError: parameter 'inference_priority' 7: this process may not use real-time" in out.stdout
    assert "CAP_SYS_NICE" in out.stdout and "rtprio" in out.stdout


def test_priorities_outside_1_to_99_and_unknown_threads_are_errors():
    with pytest.raises(ConfigError, match="must be in 1..99"):
        set_fifo_priority(threading.get_native_id(), 0)
    with pytest.raises(ConfigError, match="must be in 1..99"):
        set_fifo_priority(threading.get_native_id(), 100)
    if sys.platform == "linux":  # ids stay below pid_max: no such thread (ESRCH)
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        with pytest.raises(ConfigError, match="cannot set real-time scheduling: No such process"):
            set_fifo_priority(pid_max, PRIORITY)


def _node(tmp_path, launcher=None) -> NodeProcess:
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny")
    params = {"checkpoint": str(checkpoint), "inference_priority": PRIORITY, "warmup_iterations": 0,
              "device": "cpu"}
    return NodeProcess(params, unique_namespace("prio"), default_domain_id(), log_dir=tmp_path, launcher=launcher)


@pytest.mark.ros
@needs_realtime
def test_node_runs_exactly_its_inference_thread_at_the_priority(tmp_path):
    node = _node(tmp_path)
    try:
        node.wait_ready(STARTUP_TIMEOUT)
        assert f"inference thread: SCHED_FIFO priority {PRIORITY}" in node.output()
        tasks = [int(t) for t in os.listdir(f"/proc/{node.proc.pid}/task")]
        priorities = [fifo_priority(t) for t in tasks]
        assert sorted(priorities)[-2:] == [0, PRIORITY], priorities  # one real-time thread among normal ones
    finally:
        rc = node.stop()
    assert rc == 0, node.output()


@pytest.mark.ros
@pytest.mark.skipif(sys.platform != "linux", reason="real-time scheduling is Linux only")
def test_node_that_may_not_use_it_exits_2_naming_the_parameter(tmp_path):
    node = _node(tmp_path, launcher=WITHOUT_RIGHTS)
    try:
        rc = node.wait(STARTUP_TIMEOUT)
    finally:
        node.stop()
    out = node.output()
    assert rc == 2, out
    assert "inference_priority" in out and "may not use real-time scheduling" in out, out
    assert "Traceback" not in out, out
