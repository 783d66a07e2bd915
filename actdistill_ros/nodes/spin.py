"""The one way our nodes run: init, build (a bad configuration exits 2 with the message on
stderr), spin one single-threaded executor until Ctrl-C/shutdown, then clean up.

One executor thread on purpose: nodes keep their callbacks short and run heavy work (the policy
node's inference) on threads of their own. Measured with 20 Hz images, the MultiThreadedExecutor's
per-iteration Python work (rebuilding the wait set, handing callbacks to a thread pool) plus the
inference thread's share of the GIL starved the policy node's 20 Hz control timer to 8 Hz."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

EXIT_CONFIG_ERROR = 2
N = TypeVar("N", bound=Node)


def run_node(make_node: Callable[[], N], name: str, config_errors: tuple[type[BaseException], ...],
             cleanup: Callable[[N], None] | None = None, args: list[str] | None = None) -> int:
    """0 on a normal shutdown, ``EXIT_CONFIG_ERROR`` when ``make_node`` raises one of ``config_errors``."""
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = make_node()
        except config_errors as exc:
            print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
            return EXIT_CONFIG_ERROR
        except KeyboardInterrupt:  # Ctrl-C while loading (e.g. a model warm-up)
            return 0
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            executor.shutdown(timeout_sec=1.0)
        return 0
    finally:
        if node is not None:
            if cleanup is not None:
                cleanup(node)
            node.destroy_node()
        rclpy.try_shutdown()
