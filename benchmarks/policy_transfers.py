"""How many host <-> device copies and host waits does one ``policy.act()`` make on a GPU?

Issue 13 asks the node's GPU path for pinned host buffers and one transfer a frame. For the shipped
student and teacher (or given checkpoints), after warm-up, ``--frames`` calls of ``act()`` (a new
random 224 x 224 image each, one instruction) run under ``torch.profiler`` with the CUDA activity;
per frame it counts the copies the device ran, by direction and host memory kind (``Memcpy HtoD
(Pinned -> Device)``, ...: the names the CUDA profiler gives them, not yet checked on a GPU here),
and the host's waits on the device (``cudaStreamSynchronize``, ``cudaDeviceSynchronize``, blocking
``cudaMemcpy``). What the student should show: one host-to-device copy, from pinned memory (the
image; the instruction's tokens stay on the device); device-to-host, the route decisions (the one
read that picks the route program) and the actions.
``act()`` medians of both policies, from the same run, give the speed-up at batch 1.

    python benchmarks/policy_transfers.py [--device cuda] [--frames 20] [--student DIR]
        [--teacher DIR | --no-teacher] [--execution eager|compile|cuda_graphs] [--json out.json]

On a CPU it runs as well (there is no device copy to count: every count is 0), as a proof that it
runs (``benchmarks/gpu_routing.sh`` runs it on the GPU).
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from actdistill_ros.core.device import resolve_device
from actdistill_ros.core.model.checkpoint import default_student_path, default_teacher_path
from actdistill_ros.core.model.route_exec import Execution
from actdistill_ros.core.policy import Policy, RoutedPolicy, TeacherPolicy
from actdistill_ros.core.progress import progress_bar

INSTRUCTION = "pick up the red cube"
COPY_PREFIX = "Memcpy "  # the device's copy activities: "Memcpy HtoD (Pinned -> Device)", ...
HOST_WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def count_events(names: list[str], frames: int) -> dict[str, float]:
    """Per-frame counts of the device's copies (by their activity name) and of the host's waits."""
    counts = collections.Counter(n for n in names if n.startswith(COPY_PREFIX) or n in HOST_WAITS)
    return {name: count / frames for name, count in sorted(counts.items())}


def profile_policy(policy: Policy, images: list[np.ndarray], activities: list) -> tuple[dict[str, float], list[float]]:
    """-> (per-frame event counts, act() latencies in ms) over ``images``, one act() each."""
    latencies = []
    with profile(activities=activities) as prof:
        for image in images:
            latencies.append(policy.act(image, INSTRUCTION).latency_ms)
    return count_events([event.name for event in prof.events()], len(images)), latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--student", default="", help="student checkpoint ('' = the shipped default)")
    parser.add_argument("--teacher", default="", help="teacher checkpoint ('' = the shipped default)")
    parser.add_argument("--no-teacher", action="store_true")
    parser.add_argument("--execution", default="eager", choices=[e.value for e in Execution])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.frames < 1 or args.warmup < 0:
        parser.error(f"--frames must be >= 1 and --warmup >= 0, got {args.frames} and {args.warmup}")
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    if args.device.strip().lower().startswith("cuda") and device.type != "cuda":
        parser.error(f"--device {args.device}: CUDA is not available here (use --device cpu for a run that only "
                     "proves the script works)")
    try:
        policies: dict[str, Policy] = {"student": RoutedPolicy.load(args.student or default_student_path(),
                                                                    device=str(device), execution=args.execution)}
        if not args.no_teacher:
            policies["teacher"] = TeacherPolicy.load(args.teacher or default_teacher_path(), device=str(device))
    except ValueError as exc:  # cuda_graphs on a CPU
        parser.error(str(exc))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(args.frames)]
    rows = {}
    with progress_bar(len(policies), "profiling act()", unit="policy") as bar:
        for name, policy in policies.items():
            for image in images[:args.warmup]:
                policy.act(image, INSTRUCTION)
            counts, latencies = profile_policy(policy, images, activities)
            rows[name] = {"per_frame": counts, "act_ms_median": statistics.median(latencies)}
            bar.update()
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "machine": platform.machine(), "frames": args.frames,
              "execution": args.execution, "policies": rows}
    if "teacher" in rows:
        result["speedup_act_median"] = rows["teacher"]["act_ms_median"] / rows["student"]["act_ms_median"]
    for name, row in rows.items():
        counts = ", ".join(f"{k} {v:g}" for k, v in row["per_frame"].items()) or "none"
        print(f"{name}: act() median {row['act_ms_median']:.2f} ms; per frame: {counts}")
    if "speedup_act_median" in result:
        print(f"speed-up (teacher / student act() medians, profiled): {result['speedup_act_median']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
