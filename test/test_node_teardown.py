"""A node process ends with its status even when the middleware teardown hangs (nodes/spin.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.ros  # imports rclpy


def test_a_hanging_teardown_still_ends_the_process_with_its_status():
    script = textwrap.dedent("""
        import time
        from actdistill_ros.nodes.spin import exit_if_teardown_hangs
        exit_if_teardown_hangs("stuck_node", 2, timeout_s=0.5)
        time.sleep(60)  # stands for a destroy_node() that never returns
    """)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "stuck_node: shutting down the ROS middleware took over 0.5 s; exiting with status 2" in proc.stderr
    assert time.monotonic() - started < 20, "the watchdog did not end the process"


def test_a_teardown_that_finishes_is_not_cut_short():
    script = textwrap.dedent("""
        import sys, time
        from actdistill_ros.nodes.spin import exit_if_teardown_hangs
        exit_if_teardown_hangs("quick_node", 2, timeout_s=5.0)
        time.sleep(0.2)
        sys.exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "took over" not in proc.stderr, proc.stderr
