"""Real-time scheduling and an OS-visible name for the policy node's inference thread (Linux).

On a shared machine a CPU-bound neighbour stretches every forward pass (docs/results/README.md: the
node's p95 went from 6.1 to 9.7 ms with two busy processes on two cores). A thread under
``SCHED_FIFO`` runs before every normal (``SCHED_OTHER``) thread whenever it is ready, so a
forward pass no longer waits for a core; arm drivers do the same for their control loops (e.g.
ros2_control's ``thread_priority``). The kernel's real-time throttling (``sched_rt_runtime_us``,
95% by default) keeps a runaway thread from freezing the machine.
"""

from __future__ import annotations

import os

from actdistill_ros.core.typed_config import ConfigError

_HOW_TO_GRANT = ("grant it with CAP_SYS_NICE or an rtprio limit (e.g. '@robot - rtprio 98' in "
                 "/etc/security/limits.conf), or set inference_priority to 0")


def set_fifo_priority(thread_id: int, priority: int, parameter: str = "inference_priority") -> None:
    """Put the thread with native id ``thread_id`` (``threading.Thread.native_id``) under
    ``SCHED_FIFO`` at ``priority`` (1-99); ``ConfigError`` naming ``parameter`` when the system
    does not allow it."""
    if not 1 <= priority <= 99:
        raise ConfigError(f"parameter '{parameter}' must be in 1..99 for real-time scheduling, got {priority}")
    if not hasattr(os, "sched_setscheduler"):
        raise ConfigError(f"parameter '{parameter}': real-time scheduling is only available on Linux")
    try:
        os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        raise ConfigError(f"parameter '{parameter}' {priority}: this process may not use real-time "
                          f"scheduling; {_HOW_TO_GRANT}") from None
    except OSError as exc:
        raise ConfigError(f"parameter '{parameter}' {priority}: cannot set real-time scheduling: "
                          f"{exc.strerror or exc}") from None


def fifo_priority(thread_id: int) -> int:
    """The thread's ``SCHED_FIFO`` priority, 0 when it is scheduled normally."""
    if os.sched_getscheduler(thread_id) != os.SCHED_FIFO:
        return 0
    return os.sched_getparam(thread_id).sched_priority


INFERENCE_THREAD_NAME = "policy_infer"  # the kernel keeps 15 characters of a thread's name


def name_thread(thread_id: int, name: str) -> bool:
    """Give the thread with native id ``thread_id`` its name in the kernel (``top -H``, ``perf``,
    ``/proc/PID/task/TID/comm``), so its CPU time can be told from the executor's and DDS's
    (Python < 3.14 names only its own ``threading.Thread`` objects). Best effort: False where the
    system does not allow it."""
    try:
        with open(f"/proc/self/task/{thread_id}/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        return False
    return True
