"""Teacher vs student, same process, same inputs: FLOPs (counted by running), batch-1
latency after warm-up, layers executed, held-out action error, and the accuracy-vs-compute
curve over run-time layer caps. Ratios are student/teacher; speedup is teacher/student.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import Field

from ..data.dataset import EpisodeDataset
from ..device import resolve_device, resolve_dtype
from ..model.checkpoint import load_student, load_teacher
from ..model.flops import component_flops, count_flops
from ..progress import progress_bar
from ..training.stages import TensorData, agreement, build_tensor_data, evaluate
from ..typed_config import Float, Int, config_dataclass, to_dict


@config_dataclass
class BenchConfig:
    device: str = "cpu"
    dtype: str = "auto"
    warmup: Int = Field(5, ge=0)
    latency_iters: Int = Field(50, gt=0)  # batch-1 passes per model, interleaved teacher/student
    curve_latency_iters: Int = Field(15, gt=0)
    eval_samples: Int = Field(400, ge=0)  # held-out samples for action error (0 = all)
    flops_samples: Int = Field(16, gt=0)  # samples whose FLOPs are counted one by one (routing is per sample)
    held_out_fraction: Float = Field(0.15, ge=0, lt=1)
    threads: Int = Field(0, ge=0)  # torch CPU threads (0 = leave as is)
    curve: bool = True  # also the accuracy-vs-compute curve over run-time layer caps
    seed: Int = 0  # torch's generator, seeded first: a random-route baseline draws the same routes every run


def held_out_data(dataset_dir: str | Path, teacher, fraction: float, limit: int) -> tuple[TensorData, str]:
    """The held-out episodes of the same split the pipeline trains with; at most ``limit`` samples
    (0 = all), spread over every held-out episode."""
    dataset = EpisodeDataset.load(dataset_dir)
    if len(dataset.episodes) >= 2:
        train, held = dataset.split(fraction, seed=0)
        data, note = build_tensor_data(held, teacher, id_offset=len(train.episodes)), "held-out episodes"
    else:
        data, note = build_tensor_data(dataset, teacher), "all episodes (too few to hold any out)"
    return (data.spread(limit) if limit else data), note


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved_latency(fns: dict[str, Callable[[dict], object]], samples: list[dict], warmup: int, iters: int,
                         device: torch.device, bar=None) -> dict[str, float]:
    """Median ms per call; the models alternate so drift (thermal, other load) hits both.
    ``bar`` advances once per round, outside the timed calls."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for i in range(warmup + iters):
            inputs = samples[i % len(samples)]
            for name, fn in fns.items():
                _sync(device)
                start = time.perf_counter()
                fn(inputs)
                _sync(device)
                if i >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
            if bar is not None:
                bar.update(1)
    return {name: statistics.median(t) for name, t in times.items()}


def benchmark(teacher_dir: str | Path, student_dir: str | Path, dataset_dir: str | Path,
              cfg: BenchConfig | None = None) -> dict:
    cfg = cfg or BenchConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    teacher = load_teacher(teacher_dir).to(device=device, dtype=dtype).eval()
    student = load_student(student_dir).to(device=device, dtype=dtype).eval()
    data, data_note = held_out_data(dataset_dir, teacher, cfg.held_out_fraction, cfg.eval_samples)
    singles = [{k: v[i:i + 1].to(device) for k, v in data.inputs.items()} for i in range(min(len(data), 64))]

    # FLOPs: counted by running each model on the same batch-1 inputs (a sample of them), and
    # per component (embed, router, each layer, head), which with the per-layer execution
    # frequency over *all* evaluated samples gives the student's mean exactly (it is linear)
    n_flops = min(cfg.flops_samples, len(singles))
    teacher_flops = statistics.mean(count_flops(lambda s=s: teacher(s)) for s in singles[:n_flops])
    student_flops_sampled = statistics.mean(count_flops(lambda s=s: student.forward_routed(s))
                                            for s in singles[:n_flops])
    components = component_flops(teacher, singles[0], student)

    rounds = cfg.warmup + cfg.latency_iters + (student.num_layers * (2 + cfg.curve_latency_iters) if cfg.curve else 0)
    bar = progress_bar(rounds, "benchmark", unit="round")
    latency = _interleaved_latency({"teacher": teacher, "student": student.forward_routed}, singles,
                                   cfg.warmup, cfg.latency_iters, device, bar)
    teacher_eval = evaluate(teacher, data, routed=False)
    student_eval = evaluate(student, data, routed=True)
    student_flops = mean_routed_flops(components, student_eval["layer_frequency"])
    result = {
        "teacher": {"flops": teacher_flops, "latency_ms": latency["teacher"],
                    "action_mse": teacher_eval["action_mse"]},
        "student": {
            "flops": student_flops,
            "flops_counted_on_sample": student_flops_sampled,
            "latency_ms": latency["student"],
            "action_mse": student_eval["action_mse"],
            "action_vs_teacher_mse": agreement(student, teacher, data),
            "executed_layer_fraction": student_eval["executed_layer_fraction"],
        },
        "flops_ratio": student_flops / teacher_flops,
        "speedup": latency["teacher"] / latency["student"],
        "action_error_ratio": student_eval["action_mse"] / max(teacher_eval["action_mse"], 1e-12),
        "executed_layer_fraction": student_eval["executed_layer_fraction"],
        "layer_frequency": student_eval["layer_frequency"],
        "distinct_routes": student_eval["distinct_routes"],
        "top_routes": student_eval["top_routes"],
        "router": student.router.kind,
        "curve": keep_ratio_curve(teacher, student, data, singles, cfg, device, teacher_eval["action_mse"],
                                  components, bar) if cfg.curve else [],
        "config": {
            **to_dict(cfg),
            "teacher_dir": str(teacher_dir),
            "student_dir": str(student_dir),
            "dataset_dir": str(dataset_dir),
            "eval_data": data_note,
            "eval_samples": len(data),
            "model": to_dict(teacher.cfg),
            "model_name": getattr(teacher, "description", type(teacher).__name__),
            "hidden_size": teacher.hidden_size,
            "num_layers": teacher.num_layers,
            "device": str(device),
            "dtype": str(dtype).replace("torch.", ""),
            "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
        },
    }
    bar.close()
    return result


def mean_routed_flops(components: dict, layer_frequency: list[float]) -> float:
    """Mean student FLOPs per pass from per-component counts and per-layer execution frequency."""
    fixed = components["embed"] + components["router"] + components["head"]
    return fixed + sum(f * freq for f, freq in zip(components["layers"], layer_frequency, strict=True))


def keep_ratio_curve(teacher, student, data, singles, cfg: BenchConfig, device, teacher_mse: float,
                     components: dict, bar=None) -> list[dict]:
    """Paper Figure 3: accuracy vs compute when the run-time cap ``max_layers`` varies."""
    saved = (student.max_layers, student.threshold)
    curve = []
    try:
        for cap in range(1, student.num_layers + 1):
            student.set_budget(max_layers=cap)
            ev = evaluate(student, data, routed=True)
            ratio = mean_routed_flops(components, ev["layer_frequency"]) / components["teacher_total"]
            # teacher timed again beside each cap: ratios from the same moments are robust to drift
            lat = _interleaved_latency({"teacher": teacher, "student": student.forward_routed}, singles, 2,
                                       cfg.curve_latency_iters, device, bar)
            curve.append({"max_layers": cap, "executed_layer_fraction": ev["executed_layer_fraction"],
                          "flops_ratio": ratio, "speedup": lat["teacher"] / lat["student"],
                          "action_mse": ev["action_mse"],
                          "action_error_ratio": ev["action_mse"] / max(teacher_mse, 1e-12)})
    finally:
        student.set_budget(max_layers=saved[0], threshold=saved[1])
    return curve


def benchmark_markdown(result: dict) -> str:
    t, s, c = result["teacher"], result["student"], result["config"]
    lines = [
        f"Model: {c.get('model_name', 'TinyVLA')} {c['num_layers']} layers x width "
        f"{c.get('hidden_size', c['model'].get('hidden_size'))}, "
        f"image {c['model']['image_size']}px; {c['device']} {c['dtype']}, {c['torch_threads']} threads; "
        f"{c['eval_samples']} samples from {c['eval_data']}.",
        "",
        "| | teacher | student | student/teacher |",
        "|---|---|---|---|",
        f"| GFLOPs per action (batch 1) | {t['flops'] / 1e9:.3f} | {s['flops'] / 1e9:.3f} | "
        f"{result['flops_ratio']:.3f} |",
        f"| median latency, batch 1 (ms) | {t['latency_ms']:.2f} | {s['latency_ms']:.2f} | "
        f"speed-up {result['speedup']:.2f}x |",
        f"| decoder layers executed | {c['num_layers']} | {s['executed_layer_fraction'] * c['num_layers']:.2f} | "
        f"{s['executed_layer_fraction']:.3f} |",
        f"| held-out action MSE (normalised) | {t['action_mse']:.4f} | {s['action_mse']:.4f} | "
        f"{result['action_error_ratio']:.3f} |",
        f"| student vs teacher action MSE | | {s['action_vs_teacher_mse']:.4f} | |",
        "",
        "Run-time layer cap (accuracy vs compute):",
        "",
        "| max_layers | layers executed | FLOPs ratio | speed-up | action MSE ratio |",
        "|---|---|---|---|---|",
    ]
    for row in result["curve"]:
        lines.append(f"| {row['max_layers']} | {row['executed_layer_fraction']:.3f} | {row['flops_ratio']:.3f} | "
                     f"{row['speedup']:.2f}x | {row['action_error_ratio']:.3f} |")
    return "\n".join(lines) + "\n"
