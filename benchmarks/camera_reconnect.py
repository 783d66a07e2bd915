"""How long does the arm stay stopped when the camera driver restarts?

A camera driver that crashes or is restarted is a new process with a new DDS participant: the
policy node has to discover it before its frames arrive. Meanwhile the node stops the arm for a
stale image (as it must); this measures for how long, camera after camera:

    .venv/bin/python benchmarks/camera_reconnect.py [--checkpoint DIR] [--width 1280 --height 720]
        [--image-rate 30] [--cameras 4] [--on-s 6] [--gap-s 1] [--end alternate|clean|kill]
        [--dds-profile large_images|FILE] [--domain-id N] [--json out.json]

The policy node (``python -m actdistill_ros.nodes.policy_node``, the shipped student unless
``--checkpoint``) runs in AUTONOMY for the whole run. ``--cameras`` camera processes (the tests'
driver stand-in: rgb8 frames stamped at capture, reliable depth-5 QoS) run one after another:
each until the node commands again on its frames and ``--on-s`` more, then it ends (``clean``:
SIGINT, its participant says goodbye; ``kill``: SIGKILL, the node learns of it only by the lease;
``alternate``: clean, kill, clean, ...), and the next one starts ``--gap-s`` later. From the
node's ``status`` (received here, every control period), per camera:

* ``ready_to_commanding_s``: from the camera's publisher being created ("CAMERA READY") to the
  first status without an alarm (the node commanding again on its frames);
* ``alarms_while_on``: control periods the node stopped the arm after that, while the camera ran
  (frames that came late or not at all);
* ``ended_to_stop_s``: from the camera's end to the node's first stop (the stop itself is the
  node's promise; it comes ``image_timeout_s`` after the last frame, within a control period).

``--discovery-range``: ``ROS_AUTOMATIC_DISCOVERY_RANGE`` of the node and the cameras. With
``LOCALHOST`` (what the tests use, and a common choice on a one-host robot) Fast DDS discovers by
unicast, and a new camera was often found up to one participant announcement period late (Fast
DDS's default: 3 s; ``config/fastdds_large_images.xml`` announces every 0.5 s); with ``SUBNET``
(ROS 2's default: multicast) mostly within tenths of a second (docs/results/README.md).

Runs on CPU and CUDA alike; the camera processes and the node share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from actdistill_ros import launching
from actdistill_ros.core.progress import progress_bar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))  # policy_node_helpers: node subprocess + client + camera

from policy_node_helpers import CAMERA_CODE, Client, NodeProcess  # noqa: E402

INSTRUCTION = "pick up the red block"
ENDS = ("clean", "kill")


def end_of(camera: int, mode: str) -> str:
    """How camera number ``camera`` (0-based) ends under ``--end mode``."""
    return ENDS[camera % 2] if mode == "alternate" else mode


class CameraProcess:
    """One camera driver stand-in in its own process; notes (monotonic) when its publisher exists."""

    def __init__(self, args, topic: str, domain_id: int) -> None:
        self.started = time.monotonic()
        self.ready: float | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CAMERA_CODE, str(args.width), str(args.height), str(args.image_rate), topic],
            env={**os.environ, "ROS_DOMAIN_ID": str(domain_id), **args.dds_env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if self.ready is None and line.startswith("CAMERA READY"):
                self.ready = time.monotonic()
            self.lines.append(line.rstrip())

    def end(self, how: str) -> float:
        """SIGINT (``clean``) or SIGKILL (``kill``); -> monotonic time of the signal."""
        at = time.monotonic()
        self.proc.send_signal(signal.SIGINT if how == "clean" else signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        return at


def first_after(statuses: list, start: float, end: float, alarm: bool) -> float | None:
    """Arrival time of the first status in [start, end) whose alarm is ``alarm``."""
    return next((t for t, msg in statuses if start <= t < end and msg.alarm == alarm), None)


def camera_row(statuses: list, number: int, how: str, ready: float | None, ended: float,
               next_start: float) -> dict:
    """The measurements of one camera from the statuses received (monotonic arrival, message)."""
    commanding = first_after(statuses, ready, ended, alarm=False) if ready is not None else None
    alarms_on = [] if commanding is None else [msg for t, msg in statuses if commanding <= t < ended and msg.alarm]
    stop = first_after(statuses, ended, next_start, alarm=True)
    return {"camera": number, "end": how,
            "ready_to_commanding_s": None if commanding is None else commanding - ready,
            "alarms_while_on": len(alarms_on),
            "alarm_reasons_while_on": sorted({msg.alarm_reason.split(" (")[0] for msg in alarms_on}),
            "ended_to_stop_s": None if stop is None else stop - ended}


def wait_for_commanding(client: Client, camera: CameraProcess, timeout: float) -> float | None:
    """Spin until the node commands on ``camera``'s frames (a status without alarm after the camera's
    publisher exists); -> that status's arrival, or None if not within ``timeout`` of the camera's start
    (or the camera process died)."""
    deadline = camera.started + timeout

    def commanding() -> float | None:
        if camera.ready is None:
            return None
        return first_after(client.statuses, camera.ready, float("inf"), alarm=False)

    def done() -> bool:
        return commanding() is not None or camera.proc.poll() is not None or time.monotonic() > deadline

    client.spin_until(done, timeout + 5.0, "the node commanding on the new camera")
    return commanding()


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what would measure nothing (exit 2, the argument named)."""
    if args.cameras < 1:
        parser.error(f"--cameras must be >= 1, got {args.cameras}")
    for name in ("width", "height"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1 px, got {getattr(args, name)}")
    for name in ("image_rate", "control_rate", "on_s", "resume_timeout_s"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if not args.gap_s > args.image_timeout:
        parser.error(f"--gap-s ({args.gap_s:g}) must exceed --image-timeout ({args.image_timeout:g}): "
                     "otherwise the node never sees the image go stale between cameras")
    try:
        args.dds_env = launching.dds_profile("--dds-profile", args.dds_profile, str(REPO / "config"))
    except launching.LaunchArgumentError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="", help="student checkpoint ('' = the shipped default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=1280, help="[px]")
    parser.add_argument("--height", type=int, default=720, help="[px]")
    parser.add_argument("--image-rate", type=float, default=30.0, help="camera frame rate [Hz]")
    parser.add_argument("--control-rate", type=float, default=10.0, help="node control_rate_hz [Hz]")
    parser.add_argument("--image-timeout", type=float, default=0.5, help="node image_timeout_s [s]")
    parser.add_argument("--cameras", type=int, default=4, help="camera processes, one after another")
    parser.add_argument("--on-s", type=float, default=6.0, help="how long each camera runs once the node commands")
    parser.add_argument("--gap-s", type=float, default=1.0, help="from one camera's end to the next one's start")
    parser.add_argument("--end", choices=("alternate", *ENDS), default="alternate", help="how each camera ends")
    parser.add_argument("--resume-timeout-s", type=float, default=30.0,
                        help="a camera the node has not commanded on by then counts as never resumed")
    parser.add_argument("--dds-profile", default="",
                        help="Fast DDS profile of the cameras, the node and this process: large_images or an XML file")
    parser.add_argument("--discovery-range", choices=("LOCALHOST", "SUBNET"), default="LOCALHOST",
                        help="ROS_AUTOMATIC_DISCOVERY_RANGE of every process (ROS 2's default is SUBNET)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--domain-id", type=int, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    args.dds_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = args.discovery_range  # the node and the cameras
    os.environ.update(args.dds_env)  # this process too (before its first DDS participant)

    domain_id = args.domain_id if args.domain_id is not None else 1 + os.getpid() % 100
    ns = f"/reconnect_{os.getpid()}"
    client = Client(ns, domain_id, name="camera_reconnect_bench")
    client.latch_instruction(INSTRUCTION)
    params = {"device": args.device, "control_rate_hz": args.control_rate, "image_timeout_s": args.image_timeout,
              "instruction_timeout_s": 3600.0, "initial_mode": "autonomy", "ramp_s": 0.0, "warmup_iterations": 5}
    if args.checkpoint:
        params["checkpoint"] = args.checkpoint
    node = NodeProcess(params, ns, domain_id, torch_threads=args.torch_threads, env=dict(args.dds_env))
    spans: list[tuple[int, str, float, float | None, float]] = []  # (camera, end, started, ready, ended)
    outputs: list[list[str]] = []
    try:
        client.spin_until(lambda: client.statuses or not node.alive(), 120.0, "node start-up")
        if not node.alive():
            raise RuntimeError(f"policy node exited at start-up:\n{node.output()}")
        with progress_bar(args.cameras, "cameras", unit="camera") as bar:
            for number in range(args.cameras):
                camera = CameraProcess(args, f"{ns}/image", domain_id)
                if wait_for_commanding(client, camera, args.resume_timeout_s) is not None:
                    client.spin_for(args.on_s)
                how = end_of(number, args.end)
                ended = camera.end(how)
                outputs.append(camera.lines[-2:])
                spans.append((number, how, camera.started, camera.ready, ended))
                client.spin_for(args.gap_s)
                bar.update()
        client.spin_for(0.2)
    finally:
        node_rc = node.stop(timeout=30)
        statuses = list(client.statuses)
        client.close()
    rows = []
    for k, (number, how, _, ready, ended) in enumerate(spans):
        next_start = spans[k + 1][2] if k + 1 < len(spans) else float("inf")
        rows.append(camera_row(statuses, number, how, ready, ended, next_start))
        rows[-1]["after"] = spans[k - 1][1] if k else None  # how the camera before this one ended
        rows[-1]["camera_output"] = outputs[k]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {
        "image": {"width": args.width, "height": args.height, "encoding": "rgb8", "rate_hz": args.image_rate,
                  "dds_profile": args.dds_profile or "Fast DDS defaults"},
        "discovery_range": args.discovery_range,
        "node": {"checkpoint": args.checkpoint or "<shipped>", "device": args.device,
                 "control_rate_hz": args.control_rate, "image_timeout_s": args.image_timeout, "exit_code": node_rc},
        "on_s": args.on_s, "gap_s": args.gap_s, "end": args.end, "rows": rows,
        "cpus": os.cpu_count(), "machine": platform.machine(), "load_average": list(load) if load else None,
    }
    print(f"camera reconnects: {args.width}x{args.height} rgb8 at {args.image_rate:g} Hz "
          f"({result['image']['dds_profile']}, discovery {args.discovery_range}), node at {args.control_rate:g} Hz, "
          f"image_timeout_s {args.image_timeout:g}, {args.gap_s:g} s between cameras; "
          f"load average {result['load_average']}")
    print("| camera | the one before ended by | camera ready -> node commanding [s] | stops while it ran | "
          "ended by | its end -> stale stop [s] |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        resumed = "never" if r["ready_to_commanding_s"] is None else f"{r['ready_to_commanding_s']:.2f}"
        stop = "none seen" if r["ended_to_stop_s"] is None else f"{r['ended_to_stop_s']:.2f}"
        print(f"| {r['camera'] + 1} | {r['after'] or '(first)'} | {resumed} | {r['alarms_while_on']} | {r['end']} | "
              f"{stop} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
