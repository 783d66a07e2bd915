"""Start our nodes as separate processes (like ``ros2 launch``), and always stop them again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class NodeProcessError(RuntimeError):
    """A node process died; the message carries the end of its log."""


@dataclass
class NodeProcess:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


def node_argv(module: str, name: str, params: dict[str, Any] | None = None,
              remaps: dict[str, str] | None = None) -> list[str]:
    """``python -m actdistill_ros.nodes.<module> --ros-args ...``; values pass as JSON (valid YAML)."""
    argv = [sys.executable, "-m", f"actdistill_ros.nodes.{module}", "--ros-args", "-r", f"__node:={name}"]
    for key, value in (params or {}).items():
        argv += ["-p", f"{key}:={json.dumps(value)}"]
    for src, dst in (remaps or {}).items():
        argv += ["-r", f"{src}:={dst}"]
    return argv


@dataclass
class NodeGroup:
    """Context manager owning node processes: SIGINT on exit, SIGKILL when one ignores it."""

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[NodeProcess] = field(default_factory=list)

    def start(self, module: str, name: str, params: dict[str, Any] | None = None,
              remaps: dict[str, str] | None = None, threads: int | None = None) -> NodeProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        proc = NodeProcess(name, node_argv(module, name, params, remaps), self.log_dir / f"{name}.log")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        if threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        log = proc.log_path.open("w")
        proc.popen = subprocess.Popen(proc.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        log.close()
        self.processes.append(proc)
        return proc

    def check_alive(self) -> None:
        for proc in self.processes:
            if proc.popen is not None and proc.popen.poll() is not None:
                raise NodeProcessError(f"{proc.name} exited with status {proc.popen.returncode}; "
                                       f"log {proc.log_path}:\n{proc.log_tail()}")

    def stop(self, timeout_s: float = 5.0) -> None:
        for proc in self.processes:
            if proc.popen is not None and proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for proc in self.processes:
            if proc.popen is None:
                continue
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()

    def __enter__(self) -> NodeGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
