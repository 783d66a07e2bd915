"""The one way our nodes run: init, build (a bad configuration exits 2 with the message on
stderr), spin one single-threaded executor until Ctrl-C/SIGTERM (or the node asks to exit),
then shut down in order while the ROS context is still valid.

Signals: rclpy's own SIGINT handler shuts the context down at once, so a timer firing during
shutdown published on a dead context ("publisher's context is invalid") and a second Ctrl-C
raised KeyboardInterrupt inside ``destroy_node``. Here rclpy installs no handler; ours makes
SIGINT and SIGTERM *request* a stop: the spin loop ends within ``POLL_S``, the node's cleanup
runs (the policy node sends its last zero command), the node is destroyed and only then is
rclpy shut down. The exit status is 0, with no traceback. A signal during start-up (e.g. while a
model loads) still interrupts it, and the process exits 0.

A node asks to end the process by setting ``node.exit_code`` (e.g. the simulator after its
last episode); the spin loop returns that status.

One executor thread on purpose: nodes keep their callbacks short and run heavy work (the policy
node's inference) on threads of their own. Measured with 20 Hz images, the MultiThreadedExecutor's
per-iteration Python work (rebuilding the wait set, handing callbacks to a thread pool) plus the
inference thread's share of the GIL starved the policy node's 20 Hz control timer to 8 Hz."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

EXIT_CONFIG_ERROR = 2
POLL_S = 0.1  # longest time between a signal and the end of the spin loop
TEARDOWN_TIMEOUT_S = 10.0  # cleanup + node destruction + rclpy shutdown, at most (exit_if_teardown_hangs)
N = TypeVar("N", bound=Node)


def events_executor_available() -> bool:
    """rclpy has ``rclpy.experimental.EventsExecutor`` (ROS 2 Kilted and newer; not Humble or Jazzy)."""
    try:
        from rclpy.experimental import EventsExecutor  # noqa: F401
    except ImportError:
        return False
    return True


def make_executor(kind: str = "single_threaded") -> Executor:
    """``single_threaded``: rclpy's SingleThreadedExecutor, which rebuilds its wait set in Python at
    every wake-up (on the 2-core VM the policy node's executor thread took 51-60 ms of CPU a second
    at 10 Hz images and control, holding the GIL the inference thread needs between torch ops).
    ``events``: rclpy's EventsExecutor (C++, experimental upstream), which dispatches callbacks from
    middleware events without that bookkeeping: 22-26 ms a second. Same callbacks, same thread.
    (``benchmarks/policy_node_latency.py --node-param executor:=...``, ``node.thread_cpu_ms_per_s``.)"""
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    if kind != "single_threaded":
        raise ValueError(f"unknown executor {kind!r} (use single_threaded or events)")
    return SingleThreadedExecutor()


def init_rclpy(args: list[str] | None) -> None:
    """``rclpy.init`` without rclpy's signal handlers (the caller handles SIGINT/SIGTERM)."""
    try:
        from rclpy.signals import SignalHandlerOptions
    except ImportError:  # rclpy without the option: its handler stays (shutdown on the first Ctrl-C)
        rclpy.init(args=args)
        return
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


class StopSignals:
    """SIGINT/SIGTERM: interrupt start-up (KeyboardInterrupt), then only request a stop."""

    def __init__(self) -> None:
        self.requested: int | None = None  # the signal that asked to stop
        self.interrupt = True  # raise KeyboardInterrupt (start-up) or just record the request
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = signum
        if self.interrupt:
            raise KeyboardInterrupt


def run_node(make_node: Callable[[], N], name: str, config_errors: tuple[type[BaseException], ...],
             cleanup: Callable[[N], None] | None = None, args: list[str] | None = None,
             start: Callable[[N], None] | None = None, executor_kind: Callable[[N], str] | None = None) -> int:
    """0 on a normal shutdown, ``EXIT_CONFIG_ERROR`` when ``make_node`` or ``start`` raises one of
    ``config_errors``, ``node.exit_code`` when the node asked to end. ``start`` runs after the node
    is built and before spinning (e.g. the lifecycle autostart); ``executor_kind`` names the node's
    executor for :func:`make_executor` (default: single-threaded); ``cleanup`` after spinning, while
    the node can still publish. The middleware teardown after that is bounded (:func:`exit_if_teardown_hangs`).

    A node that never ran (a configuration error) ends the process at once, without destroying
    its DDS entities: Fast DDS 3.2 can deadlock in ``rcl_publisher_fini`` while another participant
    leaves the domain (its event thread waits for the discovery mutex that the receive thread holds
    while waiting for the event thread; seen in CI with five bad-parameter nodes exiting together,
    stack taken with gdb), and with the GIL held there, no Python watchdog can run. So ``main()``
    of a node is a process entry point: call it in a process of its own."""
    init_rclpy(args)
    served = _Served()
    status = 1  # an unexpected exception: its traceback, then status 1
    with StopSignals() as signals:
        try:
            status = _serve(make_node, name, config_errors, start, signals, served, executor_kind)
        finally:
            signals.interrupt = False  # a second Ctrl-C must not break the shutdown below
            if status == EXIT_CONFIG_ERROR:  # it never ran: nothing to flush, no teardown to risk
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
            if served.node is not None and cleanup is not None:
                cleanup(served.node)  # unbounded: e.g. a recorder closing its bag
            exit_if_teardown_hangs(name, status)
            if served.node is not None:
                if served.executor is not None:
                    served.executor.shutdown(timeout_sec=1.0)
                served.node.destroy_node()
            rclpy.try_shutdown()
    return status


class _Served:
    node: Any = None
    executor: Executor | None = None


def _serve(make_node: Callable[[], N], name: str, config_errors: tuple[type[BaseException], ...],
           start: Callable[[N], None] | None, signals: StopSignals, served: _Served,
           executor_kind: Callable[[N], str] | None = None) -> int:
    try:
        served.node = make_node()
        if start is not None:
            start(served.node)
    except config_errors as exc:
        print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:  # Ctrl-C while starting (e.g. a model warm-up)
        return 0
    signals.interrupt = False
    if signals.requested is not None:  # a signal that came during start()'s last moments
        return 0
    served.executor = executor = make_executor(executor_kind(served.node) if executor_kind else "single_threaded")
    executor.add_node(served.node)
    try:
        while signals.requested is None and getattr(served.node, "exit_code", None) is None:
            executor.spin_once(timeout_sec=POLL_S)
    except ExternalShutdownException:  # someone else shut the context down
        pass
    return int(getattr(served.node, "exit_code", None) or 0)


def exit_if_teardown_hangs(name: str, status: int, timeout_s: float = TEARDOWN_TIMEOUT_S) -> None:
    """From now on the process ends within ``timeout_s`` (+5 s), whatever hangs.

    Destroying DDS entities can block for good on rare occasions (see :func:`run_node`); whoever
    started the node (a launch file, a supervisor, a test) must still see it end. A daemon thread
    exits with ``status`` if the GIL is free; when the hang holds the GIL (as Fast DDS's does, inside
    an rclpy call), faulthandler's C-level watchdog dumps every thread's stack and exits 1."""
    def watchdog() -> None:
        time.sleep(timeout_s)
        print(f"{name}: shutting down the ROS middleware took over {timeout_s:g} s; exiting with status "
              f"{status} without waiting for it", file=sys.stderr, flush=True)
        os._exit(status)

    threading.Thread(target=watchdog, name="teardown_watchdog", daemon=True).start()
    faulthandler.dump_traceback_later(timeout_s + 5.0, exit=True)
