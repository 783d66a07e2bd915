"""End-to-end latency of the policy node over DDS, against the bare forward pass.

    .venv/bin/python benchmarks/policy_node_latency.py [--checkpoint DIR | --random default] [--device cpu]
        [--duration 20] [--image-rate 10] [--control-rate 10] [--size 224 | --width W --height H]
        [--camera-process] [--dds-profile large_images|FILE] [--set-max-layers-hz 10]
        [--command-timing timer|prediction] [--inference-priority N] [--node-source DIR]
        [--node-param NAME:=VALUE ...] [--interleave N] [--json out.json]

1. Bare forward: ``RoutedPolicy.load(...)`` in this process, ``act()`` on the same kind of
   images the node will get (timed with perf_counter around the call), once before and once
   after the node phase; the faster of the two medians is the reference. Also once paced, one
   call per image period as the node makes them: a pass every 100 ms finds its caches cold
   (slower than back to back), so "overhead beyond the paced forward" is what the node itself adds.
2. The node: ``python -m actdistill_ros.nodes.policy_node`` in its own process (unique
   namespace, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), started in AUTONOMY with no ramp.
   This process publishes ``size x size`` rgb8 images at ``--image-rate`` Hz, each stamped
   with the ROS time of publication, and records when each action arrives. The node stamps
   every POLICY action with the header stamp of the image it was computed from, so

       e2e latency(image) = arrival of the first action carrying its stamp - its publication,

   which includes DDS transport both ways, decoding, waiting for the worker, the forward
   pass, and waiting for the next control tick (on average half a control period).
   ``overhead = e2e - forward`` (medians). The node's status also names when it received each
   predicted image, which splits image -> prediction ready into transport (published ->
   received: serialisation, DDS, the executor's take) and the node's own part (received ->
   ready, less the forward pass the node timed: waiting for the worker and decoding). The
   control rate and period jitter come from the arrival times of all actions (|interval -
   period|, p99).

Options for what a real arm adds:

* ``--camera-process``: the images come from a separate process, like a camera driver (the
  latency is then arrival - image stamp, both on this machine's clock); with ``--width`` /
  ``--height`` e.g. 1920x1080 rgb8 at ``--image-rate 30``. ``--dds-profile large_images`` runs the
  camera and the node with ``config/fastdds_large_images.xml`` (or give an XML file). The result
  counts the control ticks the node stopped for a stale image.
* ``--set-max-layers-hz F``: during the window, this process sets the node's ``max_layers``
  (alternately 2 and 0) F times a second on average, at random moments, through its parameter
  service, as an operator tuning the budget would; compare the control period p99 with a run
  without it.
* ``--inference-priority N``: the node's inference thread under ``SCHED_FIFO`` N (its
  ``inference_priority`` parameter): the executor and DDS threads then never delay a pass.
* ``--node-source DIR``: run the node from another checkout's sources (e.g. an older commit, for a
  before/after comparison); the interfaces still come from this venv.
* ``--node-param NAME:=VALUE``: any other node parameter (repeatable), e.g. ``max_layers:=2``.
* ``--interleave N``: N node windows of ``duration / N``, each followed by as long a paced bare
  forward in this process while the node gets no images (and idles, stopping the arm for a stale
  image). On a machine with slow stretches of seconds, a paced reference taken before the node
  and a node window taken after it can land in different regimes; interleaved, both sample the
  same minutes, and the JSON pairs each window with the paced forward after it
  (``interleaved.pairs``, ``overhead_ms_median_of_pairs``). The paced reference of every other
  field is then these calls.

The node's CPU time is counted thread by thread over the windows (Linux ``/proc``;
``node.thread_cpu_ms_per_s``): the executor (the main thread, which spins: callbacks and
rclpy's bookkeeping, the Python that takes the GIL from a forward pass), the inference worker
(by its kernel name) and the rest (DDS, logging). Compare ``--node-param executor:=events``.

The JSON also keeps, call by call, the paced bare forward (``forward_paced_series_ms``) and each
image's time to prediction with the node's forward (``node.image_to_ready_series``): on a shared
VM whole seconds of slow passes come and go, and these show whether a slow run was the node or
the machine (``--forward-iterations 600``: a minute of paced calls at 10 Hz).

Runs on CPU (2 cores: expect scheduler noise) and CUDA alike; both phases run one after
the other, never concurrently, so they do not compete for the cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from actdistill_ros.core.progress import progress_bar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))  # policy_node_helpers: node subprocess + client

from policy_node_helpers import (  # noqa: E402
    CAMERA_CODE,
    Client,
    NodeProcess,
    image_msg,
    make_tiny_checkpoint,
    stamp_to_ns,
)

INSTRUCTION = "pick up the red block"
THREAD_ROLES = ("executor", "inference", "other")


def thread_cpu_ms(pid: int) -> dict[str, float]:
    """CPU time so far of process ``pid``'s threads by role, ms: the main thread (which spins the
    executor), the inference worker (named by the node, :data:`INFERENCE_THREAD_NAME`), all others
    (DDS, logging). Empty where there is no ``/proc``; a thread that ended is no longer counted."""
    from actdistill_ros.nodes.thread_priority import INFERENCE_THREAD_NAME

    totals = dict.fromkeys(THREAD_ROLES, 0.0)
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return {}
    for task in tasks:
        try:
            comm = (task / "comm").read_text().strip()
            try:  # nanoseconds on the CPU (schedstat), else user + system clock ticks (stat)
                ms = int((task / "schedstat").read_text().split()[0]) / 1e6
            except (OSError, ValueError, IndexError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                ms = (int(fields[11]) + int(fields[12])) * 1e3 / os.sysconf("SC_CLK_TCK")
        except OSError:  # the thread ended meanwhile
            continue
        role = "executor" if task.name == str(pid) else "inference" if comm == INFERENCE_THREAD_NAME else "other"
        totals[role] += ms
    return totals


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": pct(values, 50),
        "p99": pct(values, 99),
        "mean": float(statistics.fmean(values)) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def load_bare_policy(checkpoint: str, device: str, threads: int | None):
    """The student as the node loads it, in this process, warmed up."""
    import torch

    from actdistill_ros.core.policy import RoutedPolicy

    if threads is not None:
        torch.set_num_threads(threads)
    policy = RoutedPolicy.load(checkpoint or None, device=device)
    policy.warmup(5)
    return policy


def time_calls(policy, images: list[np.ndarray], iterations: int, pace_hz: float = 0.0,
               desc: str = "") -> tuple[list[float], list[float], list[int]]:
    """``policy.act()`` back to back, or (``pace_hz`` > 0) one call per period as the node makes them:
    at 10 Hz a pass finds its caches cold (on the 2-core VM 4.3 ms against 2.9 back to back), which
    is the forward the node can have at best, so the node's own overhead is measured against it.
    Returns wall ms (perf_counter around the call), the latency ``act()`` reports and the layers run."""
    wall, reported, layers = [], [], []
    next_call = time.perf_counter()
    desc = desc or (f"bare forward, {pace_hz:g} Hz" if pace_hz > 0 else "bare forward, back to back")
    with progress_bar(iterations, desc, unit="pass") as bar:
        for i in range(iterations):
            if pace_hz > 0:
                next_call += 1.0 / pace_hz
                time.sleep(max(0.0, next_call - time.perf_counter()))
            t0 = time.perf_counter()
            out = policy.act(images[i % len(images)], INSTRUCTION)
            wall.append((time.perf_counter() - t0) * 1e3)
            reported.append(out.latency_ms)
            layers.append(out.layers_executed)
            bar.update()
    return wall, reported, layers


def bare_forward(checkpoint: str, device: str, images: list[np.ndarray], iterations: int, threads: int | None,
                 pace_hz: float = 0.0) -> dict:
    """:func:`time_calls` on a freshly loaded policy, with what the result needs to name the run."""
    import torch

    policy = load_bare_policy(checkpoint, device, threads)
    wall, reported, layers = time_calls(policy, images, iterations, pace_hz)
    info = {
        "device": str(policy.device),
        "image_size": list(policy.image_size),
        "chunk_size": policy.chunk_size,
        "layers_total": policy.layers_total,
        "layers_executed_mean": float(np.mean(layers)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    del policy
    return {"wall_ms": summary(wall), "reported_ms": summary(reported), "info": info,
            "series_ms": [round(ms, 3) for ms in wall]}  # in call order: slow stretches show as runs


def run_node(args, checkpoint: str, images: list[np.ndarray],
             between: Callable[[int], None] | None = None) -> dict:
    """The node phase: ``args.interleave`` windows (one when 0) of ``args.duration`` in all; after
    window k, with no images flowing (the node idles, stopping the arm for a stale image),
    ``between(k)`` runs this process's paced forward, so both see the machine in the same moments."""
    domain_id = args.domain_id if args.domain_id is not None else 1 + os.getpid() % 100
    ns = f"/bench_{os.getpid()}"
    client = Client(ns, domain_id, name="latency_bench")
    client.latch_instruction(INSTRUCTION)
    params = {
        "checkpoint": checkpoint,
        "device": args.device,
        "control_rate_hz": float(args.control_rate),
        "image_timeout_s": float(args.image_timeout),
        "instruction_timeout_s": 3600.0,
        "initial_mode": "autonomy",
        "ramp_s": 0.0,
        "warmup_iterations": 5,
    }
    if args.command_timing != "timer":  # (an older node, --node-source, does not know the parameter)
        params["command_timing"] = args.command_timing
    if args.inference_priority:
        params["inference_priority"] = int(args.inference_priority)
    if checkpoint == "":
        params.pop("checkpoint")
    params.update(args.node_params)
    node_env, node_cwd = dict(args.dds_env), REPO
    if args.node_source:
        node_cwd = Path(args.node_source).resolve()
        node_env["PYTHONPATH"] = str(node_cwd)
    # torch threads as in the bare pass
    node = NodeProcess(params, ns, domain_id, torch_threads=args.torch_threads, env=node_env, cwd=node_cwd)
    published: dict[int, float] = {}
    camera = None
    param_stats = {"sent": 0, "ok": 0, "refused": 0}
    try:
        client.spin_until(lambda: client.statuses or not node.alive(), 120.0, "node start-up")
        if not node.alive():
            raise RuntimeError(f"node exited at start-up:\n{node.output()}")
        timer = None
        msgs = [image_msg(img) for img in images]
        counter = {"i": 0}

        def publish():
            msg = msgs[counter["i"] % len(msgs)]
            counter["i"] += 1
            msg.header.stamp = client.node.get_clock().now().to_msg()
            client.image_pub.publish(msg)
            published[stamp_to_ns(msg.header.stamp)] = time.monotonic()

        if args.camera_process:
            camera = subprocess.Popen(
                [sys.executable, "-c", CAMERA_CODE, str(args.width), str(args.height), str(args.image_rate),
                 f"{ns}/image"], env={**os.environ, "ROS_DOMAIN_ID": str(domain_id), **args.dds_env},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        else:
            timer = client.node.create_timer(1.0 / args.image_rate, publish)
        if args.camera_process:  # the camera process takes seconds to start: wait for its first frame
            client.spin_until(lambda: any(m.layers_executed > 0 for _, m in client.statuses), 120.0,
                              "the first prediction on the camera's frames")
        client.spin_for(args.settle)  # first inferences, JIT/caches, discovery
        param_changes = None
        if args.set_max_layers_hz > 0:
            param_changes = start_budget_changes(client, args.set_max_layers_hz, param_stats)
        n_windows = max(1, args.interleave)
        window_s = args.duration / n_windows
        windows: list[tuple[float, float]] = []  # (open, close), this process's monotonic clock
        window_cpu: list[dict[str, float]] = []  # the node's CPU ms per thread role, window by window
        n_actions_before = len(client.actions)
        n_status_before = len(client.statuses)
        for k in range(n_windows):
            if k:  # images again, the node out of its stale-image stop before the window opens
                timer = client.node.create_timer(1.0 / args.image_rate, publish)
                client.spin_for(min(args.settle, 1.0))
            cpu_open = thread_cpu_ms(node.proc.pid)
            w_start = time.monotonic()
            desc = "node window" if n_windows == 1 else f"node window {k + 1}/{n_windows}"
            with progress_bar(math.ceil(window_s), desc, unit="s") as bar:
                while (left := w_start + window_s - time.monotonic()) > 0:
                    client.spin_for(min(1.0, left))
                    bar.update()
            windows.append((w_start, time.monotonic()))
            cpu_close = thread_cpu_ms(node.proc.pid)
            window_cpu.append({k: cpu_close[k] - cpu_open[k] for k in cpu_open if k in cpu_close})
            if timer is not None:
                client.node.destroy_timer(timer)
                timer = None
            if between is not None:
                client.spin_for(0.3)  # the window's last actions and statuses, before this process goes quiet
                between(k)
        t_start, t_end = windows[0][0], windows[-1][1]
        if param_changes is not None:
            param_changes.set()
        client.spin_for(0.5)  # the last parameter answers
    finally:
        client.close()
        camera_output = ""
        if camera is not None:
            camera.send_signal(signal.SIGINT)
            camera_output = camera.communicate(timeout=30)[0]
        rc = node.stop()
    log = node.output()
    if rc not in (0, None):
        raise RuntimeError(f"node exit status {rc}:\n{log}")

    def window_of(t: float) -> int | None:
        return next((k for k, (w0, w1) in enumerate(windows) if w0 <= t <= w1), None)

    actions = client.actions[n_actions_before:]
    # statuses of the windows only (the stream stops at a window's end, the last answers are awaited after)
    window_statuses = [(t, m) for t, m in client.statuses[n_status_before:] if window_of(t) is not None]
    arrivals_by_window = [[t for t, _ in actions if w0 <= t <= w1] for w0, w1 in windows]
    first_arrival: dict[int, float] = {}
    sources: dict[int, int] = {}
    wall_minus_monotonic = time.time() - time.monotonic()
    for t, msg in actions:
        if window_of(t) is not None:
            sources[msg.source] = sources.get(msg.source, 0) + 1
        ns_stamp = stamp_to_ns(msg.header.stamp)
        if args.camera_process and msg.source in (2, 3) and ns_stamp not in first_arrival:  # POLICY, BLEND
            # a separate camera: its stamp (this machine's clock) is the time of capture
            published.setdefault(ns_stamp, ns_stamp / 1e9 - wall_minus_monotonic)
        if ns_stamp in published and ns_stamp not in first_arrival:
            first_arrival[ns_stamp] = t
    e2e = [(first_arrival[s] - published[s]) * 1e3 for s in first_arrival if window_of(published[s]) is not None]
    if args.camera_process:
        images_in_window = int(round(args.image_rate * (t_end - t_start)))
    else:
        images_in_window = sum(1 for t in published.values() if window_of(t) is not None)
    # control periods within each window (the gaps between windows are not periods)
    intervals = np.concatenate([np.diff(ts) for ts in arrivals_by_window if len(ts) > 1] or [np.array([])])
    span_s = sum(ts[-1] - ts[0] for ts in arrivals_by_window if len(ts) > 1)
    period = 1.0 / args.control_rate
    jitter_ms = (np.abs(intervals - period) * 1e3).tolist()
    node_inference = [
        m.inference_latency_ms for _, m in window_statuses if m.inference_latency_ms > 0
    ]
    alarms = [m.alarm_reason for _, m in window_statuses if m.alarm]
    # image published -> prediction ready in the node (both ROS times of this machine's clock):
    # transport + decoding + waiting for the worker + forward, without the wait for the next tick
    # split at the node's reception (status.prediction_received_stamp): transport (serialisation,
    # DDS, the executor's take) and the node's own part, which beyond its forward pass is waiting
    # for the worker and decoding
    ready: dict[int, float] = {}
    transport: dict[int, float] = {}
    in_node_beyond_forward: dict[int, float] = {}
    forward_of: dict[int, float] = {}
    # every status after the window opened (also the drain after each window): an image of a window
    # counts, whichever moment its prediction was reported
    for _, m in client.statuses[n_status_before:]:
        image_ns = stamp_to_ns(m.prediction_image_stamp)
        if image_ns in published and image_ns not in ready and window_of(published[image_ns]) is not None:
            ready_ns, received_ns = stamp_to_ns(m.prediction_ready_stamp), stamp_to_ns(m.prediction_received_stamp)
            ready[image_ns] = (ready_ns - image_ns) / 1e6
            forward_of[image_ns] = m.inference_latency_ms
            if received_ns:  # (an older node, --node-source, leaves it zero)
                transport[image_ns] = (received_ns - image_ns) / 1e6
                in_node_beyond_forward[image_ns] = (ready_ns - received_ns) / 1e6 - m.inference_latency_ms
    by_window = [[s for s in ready if window_of(published[s]) == k] for k in range(len(windows))]
    window_s = [w1 - w0 for w0, w1 in windows]
    cpu_roles = THREAD_ROLES if all(window_cpu) else ()  # thread_cpu_ms gives all roles or none
    return {
        "e2e_ms": summary(e2e),
        "image_to_ready_ms": summary(list(ready.values())),
        # window by window (one entry unless --interleave): seconds since the first opened, and its images
        "windows": [
            {"open_s": round(w0 - t_start, 3), "close_s": round(w1 - t_start, 3),
             "image_to_ready_ms": summary([ready[s] for s in images]),
             "node_forward_ms": summary([forward_of[s] for s in images]),
             "thread_cpu_ms_per_s": {role: round(cpu[role] / span, 2) for role in cpu_roles}}
            for (w0, w1), images, cpu, span in zip(windows, by_window, window_cpu, window_s, strict=True)
        ],
        # the node's threads over all windows, CPU ms per second of window ({} without /proc)
        "thread_cpu_ms_per_s": {role: round(sum(cpu[role] for cpu in window_cpu) / sum(window_s), 2)
                                for role in cpu_roles},
        # per image of the summary above, in publication order: (s since the window opened, ms to
        # prediction ready, the node's forward ms): where the slow passes fall (periodic, in runs, ...)
        "image_to_ready_series": [[round(published[s] - t_start, 4), round(ms, 3), round(forward_of[s], 3)]
                                  for s, ms in sorted(ready.items())],
        "transport_ms": summary(list(transport.values())),
        "node_beyond_forward_ms": summary(list(in_node_beyond_forward.values())),
        "images_published": images_in_window,
        "images_acted_on": len(e2e),
        "control_target_hz": float(args.control_rate),
        "control_achieved_hz": len(intervals) / span_s if span_s > 0 else 0.0,
        "period_jitter_ms": summary(jitter_ms),
        "node_inference_ms": summary(node_inference),
        "control_period_ms": summary((intervals * 1e3).tolist()),
        "action_sources": {str(k): v for k, v in sorted(sources.items())},
        "alarms": len(alarms),
        "stale_image_stops": sum(1 for a in alarms if "image" in a),
        "alarm_examples": sorted(set(alarms))[:3],
        "budget_changes": param_stats,
        "camera_output": camera_output.strip().splitlines()[-1:] if camera_output else [],
    }


def start_budget_changes(client: Client, rate_hz: float, stats: dict[str, int]) -> threading.Event:
    """Set the node's max_layers (2, 0, 2, ...) ``rate_hz`` times a second on average, at random
    moments (a timer of this process would be phase-locked to its image timer), never waiting for
    the answer. Returns the event that stops it."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    cli = client.node.create_client(SetParameters, "policy_node/set_parameters")
    if not cli.wait_for_service(timeout_sec=10.0):
        raise RuntimeError("policy_node/set_parameters not available")
    stop = threading.Event()
    rng = np.random.default_rng(1)

    def done(future) -> None:
        result = future.result()
        stats["ok" if result is not None and result.results[0].successful else "refused"] += 1

    def run() -> None:
        while not stop.wait(rng.uniform(0.5, 1.5) / rate_hz):
            value = 2 if stats["sent"] % 2 == 0 else 0
            value_msg = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
            request = SetParameters.Request(parameters=[Parameter(name="max_layers", value=value_msg)])
            cli.call_async(request).add_done_callback(done)
            stats["sent"] += 1

    threading.Thread(target=run, name="budget_changes", daemon=True).start()
    return stop


def node_params(parser: argparse.ArgumentParser, items: list[str]) -> dict:
    """``--node-param NAME:=VALUE`` items as parameters (the ``ros2 run -p`` syntax); the node itself
    refuses a name or value it does not accept, at start-up."""
    params = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name.strip():
            parser.error(f"--node-param {item!r}: expected NAME:=VALUE, e.g. diagnostics_rate_hz:=0.0")
        try:
            params[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            parser.error(f"--node-param {item!r}: the value is not YAML ({exc})")
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="", help="student checkpoint ('' = the shipped default)")
    parser.add_argument(
        "--random",
        metavar="PRESET",
        default=None,
        choices=("test", "default"),
        help="use a freshly made random student of this TinyVLA preset instead of a checkpoint",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--duration", type=float, default=20.0, help="measurement window [s]")
    parser.add_argument("--settle", type=float, default=3.0, help="streaming before the window [s]")
    parser.add_argument("--image-rate", type=float, default=10.0, help="[Hz]")
    parser.add_argument("--control-rate", type=float, default=10.0, help="node control_rate_hz [Hz]")
    parser.add_argument("--size", type=int, default=224, help="published image height and width [px]")
    parser.add_argument("--width", type=int, default=None, help="image width [px] (default: --size)")
    parser.add_argument("--height", type=int, default=None, help="image height [px] (default: --size)")
    parser.add_argument("--camera-process", action="store_true",
                        help="publish the images from a separate process (like a camera driver)")
    parser.add_argument("--dds-profile", default="",
                        help="Fast DDS XML profile for the camera, the node and this process: large_images "
                             "(config/fastdds_large_images.xml) or a file; '' = Fast DDS defaults")
    parser.add_argument("--image-timeout", type=float, default=1.0, help="node image_timeout_s [s]")
    parser.add_argument("--set-max-layers-hz", type=float, default=0.0,
                        help="set max_layers this often during the window (0 = never) [Hz]")
    parser.add_argument("--command-timing", default="timer", choices=("timer", "prediction"),
                        help="node command_timing: commands on the timer only, or also when a prediction is ready")
    parser.add_argument("--inference-priority", type=int, default=0,
                        help="> 0: the node's inference thread under SCHED_FIFO at this priority")
    parser.add_argument("--node-source", default="", help="run the node from this checkout's sources")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="one more node parameter (repeatable), the value read as YAML, e.g. "
                             "diagnostics_rate_hz:=0.0")
    parser.add_argument("--forward-iterations", type=int, default=100)
    parser.add_argument("--interleave", type=int, default=0, metavar="N",
                        help="split the window into N node windows, each followed by as long a paced bare "
                             "forward in this process (the paced reference then shares the machine's moments "
                             "with the node); 0 = one window, the paced forward before it")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch threads, both phases")
    parser.add_argument("--domain-id", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    args.node_params = node_params(parser, args.node_param)
    if args.interleave:
        if args.interleave < 2:
            parser.error(f"--interleave {args.interleave}: give 2 or more windows (0 = one window, no interleaving)")
        if args.duration / args.interleave < 1.0:
            parser.error(f"--interleave {args.interleave}: windows of {args.duration / args.interleave:.2f} s "
                         f"(--duration {args.duration:g}); each needs at least 1 s")
        if args.camera_process or args.set_max_layers_hz > 0:
            parser.error("--interleave needs the images from this process and no --set-max-layers-hz: both "
                         "would go on while the paced forward runs")

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    args.width = args.width or args.size
    args.height = args.height or args.size
    profile = args.dds_profile
    if profile == "large_images":
        profile = str(REPO / "config" / "fastdds_large_images.xml")
    args.dds_env = {"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else {}
    os.environ.update(args.dds_env)  # this process too (before its first DDS participant)
    checkpoint = args.checkpoint
    if args.random:
        directory = Path(tempfile.mkdtemp(prefix="bench_student_")) / args.random
        checkpoint = str(make_tiny_checkpoint(directory, preset=args.random))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(args.height, args.width, 3), dtype=np.uint8) for _ in range(8)]

    # bare forward before and after the node phase: on a shared machine the two can differ;
    # the overhead is computed against the faster one (the conservative choice)
    before = bare_forward(checkpoint, args.device, images, args.forward_iterations, args.torch_threads)
    if args.interleave:  # the paced reference in between the node windows, as many calls as images
        policy = load_bare_policy(checkpoint, args.device, args.torch_threads)
        paced_windows: list[list[float]] = []
        calls = max(3, round(args.image_rate * args.duration / args.interleave))

        def paced_window(k: int) -> None:
            wall, _, _ = time_calls(policy, images, calls, args.image_rate,
                                    f"paced forward {k + 1}/{args.interleave}")
            paced_windows.append(wall)

        node = run_node(args, checkpoint, images, between=paced_window)
        del policy
        paced_series = [round(ms, 3) for wall in paced_windows for ms in wall]
    else:
        paced_series = bare_forward(checkpoint, args.device, images, args.forward_iterations, args.torch_threads,
                                    pace_hz=args.image_rate)["series_ms"]
        paced_windows = []
        node = run_node(args, checkpoint, images)
    paced = summary(paced_series)
    after = bare_forward(checkpoint, args.device, images, args.forward_iterations, args.torch_threads)
    forward = min(before, after, key=lambda r: r["wall_ms"]["median"])
    forward = {**{k: v for k, v in forward.items() if k != "series_ms"}, "before_ms": before["wall_ms"],
               "after_ms": after["wall_ms"]}
    overhead = node["e2e_ms"]["median"] - forward["wall_ms"]["median"]
    result = {
        "checkpoint": f"<random {args.random}>" if args.random else checkpoint or "<shipped default>",
        "platform": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "image": {"width": args.width, "height": args.height, "encoding": "rgb8", "rate_hz": args.image_rate,
                  "source": "camera process" if args.camera_process else "this process",
                  "dds_profile": args.dds_profile or "Fast DDS defaults"},
        "set_max_layers_hz": args.set_max_layers_hz,
        "command_timing": args.command_timing,
        "inference_priority": args.inference_priority,
        "node_params": args.node_params,
        "load_average": list(os.getloadavg()),
        "node_source": args.node_source or ".",  # '.': this checkout (no machine path in a JSON)
        "forward": forward,
        "node": node,
        "overhead_ms_median": overhead,
        "overhead_ms_p99": node["e2e_ms"]["p99"] - forward["wall_ms"]["p99"],
        # without the wait for the next control tick: image published -> prediction ready
        "pipeline_overhead_ms_median": node["image_to_ready_ms"]["median"] - forward["wall_ms"]["median"],
        "pipeline_overhead_ms_p99": node["image_to_ready_ms"]["p99"] - forward["wall_ms"]["p99"],
        "expected_tick_wait_ms": 0.5e3 / args.control_rate,
        # against the forward at the image rate (its caches as cold as in the node): what the node adds
        "forward_paced_ms": paced,
        # every paced call in order (--forward-iterations 600: a minute at 10 Hz): does the machine
        # itself have slow stretches, with no node and no DDS in the process?
        "forward_paced_series_ms": paced_series,
        "paced_reference": "interleaved with the node windows" if args.interleave else "before the node",
        "pipeline_overhead_vs_paced_ms_median": node["image_to_ready_ms"]["median"] - paced["median"],
        "pipeline_overhead_vs_paced_ms_p99": node["image_to_ready_ms"]["p99"] - paced["p99"],
        "overhead_vs_paced_ms_median": node["e2e_ms"]["median"] - paced["median"],
        "overhead_vs_paced_ms_p99": node["e2e_ms"]["p99"] - paced["p99"],
    }
    if args.interleave:
        # window by window: the node's image -> ready and its own forward, each against the paced
        # forward that followed it; the median of the differences pairs the machine's moments
        pairs = [{"image_to_ready_median_ms": w["image_to_ready_ms"]["median"],
                  "node_forward_median_ms": w["node_forward_ms"]["median"],
                  "paced_forward_median_ms": pct(wall, 50)}
                 for w, wall in zip(node["windows"], paced_windows, strict=True)]
        for pair in pairs:
            pair["overhead_ms"] = pair["image_to_ready_median_ms"] - pair["paced_forward_median_ms"]
            pair["node_forward_minus_paced_ms"] = pair["node_forward_median_ms"] - pair["paced_forward_median_ms"]
        result["interleaved"] = {
            "windows": args.interleave,
            "calls_per_paced_window": calls,
            "pairs": pairs,
            "overhead_ms_median_of_pairs": pct([p["overhead_ms"] for p in pairs], 50),
            "node_forward_minus_paced_ms_median_of_pairs": pct([p["node_forward_minus_paced_ms"] for p in pairs], 50),
        }

    f, n = forward["wall_ms"], node
    rows = [
        ("bare policy.act() [ms]", f"{f['median']:.2f}", f"{f['p99']:.2f}"),
        ("  (before / after) [ms]", f"{forward['before_ms']['median']:.1f}/{forward['after_ms']['median']:.1f}", ""),
        (f"  one call per image ({args.image_rate:g} Hz) [ms]", f"{paced['median']:.2f}", f"{paced['p99']:.2f}"),
        (
            "forward inside node [ms]",
            f"{n['node_inference_ms']['median']:.2f}",
            f"{n['node_inference_ms']['p99']:.2f}",
        ),
        ("image -> prediction ready [ms]", f"{n['image_to_ready_ms']['median']:.2f}",
         f"{n['image_to_ready_ms']['p99']:.2f}"),
        ("  overhead beyond forward [ms]", f"{result['pipeline_overhead_ms_median']:.2f}",
         f"{result['pipeline_overhead_ms_p99']:.2f}"),
        ("    transport: published -> received [ms]", f"{n['transport_ms']['median']:.2f}",
         f"{n['transport_ms']['p99']:.2f}"),
        ("    in the node beyond its forward [ms]", f"{n['node_beyond_forward_ms']['median']:.2f}",
         f"{n['node_beyond_forward_ms']['p99']:.2f}"),
        ("  overhead beyond paced forward [ms]", f"{result['pipeline_overhead_vs_paced_ms_median']:.2f}",
         f"{result['pipeline_overhead_vs_paced_ms_p99']:.2f}"),
        ("e2e image -> action [ms]", f"{n['e2e_ms']['median']:.2f}", f"{n['e2e_ms']['p99']:.2f}"),
        ("  e2e - forward (incl. tick wait) [ms]", f"{overhead:.2f}", f"{result['overhead_ms_p99']:.2f}"),
        ("  e2e - paced forward [ms]", f"{result['overhead_vs_paced_ms_median']:.2f}",
         f"{result['overhead_vs_paced_ms_p99']:.2f}"),
        ("control period [ms]", f"{n['control_period_ms']['median']:.2f}", f"{n['control_period_ms']['p99']:.2f}"),
        (
            "control period jitter [ms]",
            f"{n['period_jitter_ms']['median']:.2f}",
            f"{n['period_jitter_ms']['p99']:.2f}",
        ),
    ]
    print(
        f"\npolicy node latency: {forward['info']['device']}, {args.width}x{args.height} rgb8 at "
        f"{args.image_rate:g} Hz ({result['image']['source']}, {result['image']['dds_profile']}), "
        f"control {args.control_rate:g} Hz ({args.command_timing}), {args.duration:g} s window; "
        f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
        + (f", max_layers set at {args.set_max_layers_hz:g} Hz" if args.set_max_layers_hz else "")
    )
    print(f"{'':32s}{'median':>10s}{'p99':>10s}")
    for name, med, p99 in rows:
        print(f"{name:32s}{med:>10s}{p99:>10s}")
    print(f"control rate achieved: {n['control_achieved_hz']:.2f} Hz (target {args.control_rate:g})")
    print(f"images acted on: {n['images_acted_on']}/{n['images_published']} (newest frame only)")
    if n["thread_cpu_ms_per_s"]:
        print("node CPU per thread [ms/s]: " + ", ".join(f"{k} {v:.1f}" for k, v in n["thread_cpu_ms_per_s"].items()))
    print(
        f"expected wait for the next tick: ~{result['expected_tick_wait_ms']:.0f} ms on average; "
        f"alarms during the window: {n['alarms']} ({n['stale_image_stops']} for a stale image)"
    )
    if args.set_max_layers_hz:
        print(f"max_layers changes: {n['budget_changes']}")
    if args.interleave:
        inter = result["interleaved"]
        print(f"interleaved, {args.interleave} node windows each followed by {calls} paced calls "
              "(image -> ready / node forward / paced forward / overhead, medians, ms):")
        for k, pair in enumerate(inter["pairs"]):
            print(f"  window {k + 1}: {pair['image_to_ready_median_ms']:.2f} / {pair['node_forward_median_ms']:.2f} / "
                  f"{pair['paced_forward_median_ms']:.2f} / {pair['overhead_ms']:.2f}")
        print(f"  overhead beyond the paced forward, median of the pairs: "
              f"{inter['overhead_ms_median_of_pairs']:.2f} ms (the node's forward - the paced one: "
              f"{inter['node_forward_minus_paced_ms_median_of_pairs']:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
