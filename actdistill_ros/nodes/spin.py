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

import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

EXIT_CONFIG_ERROR = 2
POLL_S = 0.1  # longest time between a signal and the end of the spin loop
N = TypeVar("N", bound=Node)


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
             start: Callable[[N], None] | None = None) -> int:
    """0 on a normal shutdown, ``EXIT_CONFIG_ERROR`` when ``make_node`` or ``start`` raises one of
    ``config_errors``, ``node.exit_code`` when the node asked to end. ``start`` runs after the node
    is built and before spinning (e.g. the lifecycle autostart); ``cleanup`` after spinning, while
    the node can still publish."""
    init_rclpy(args)
    node = None
    executor = None
    with StopSignals() as signals:
        try:
            try:
                node = make_node()
                if start is not None:
                    start(node)
            except config_errors as exc:
                print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
                return EXIT_CONFIG_ERROR
            except KeyboardInterrupt:  # Ctrl-C while starting (e.g. a model warm-up)
                return 0
            signals.interrupt = False
            if signals.requested is not None:  # a signal that came during start()'s last moments
                return 0
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            try:
                while signals.requested is None and getattr(node, "exit_code", None) is None:
                    executor.spin_once(timeout_sec=POLL_S)
            except ExternalShutdownException:  # someone else shut the context down
                pass
            return int(getattr(node, "exit_code", None) or 0)
        finally:
            signals.interrupt = False  # a second Ctrl-C must not break the shutdown below
            if node is not None:
                if cleanup is not None:
                    cleanup(node)
                if executor is not None:
                    executor.shutdown(timeout_sec=1.0)
                node.destroy_node()
            rclpy.try_shutdown()
