"""Progress you can see: training stages and the benchmark draw tqdm bars with count, rate and
ETA. Captured here (not a terminal, like a log file or ``make demo | tee``) each refresh is one
whole line, never a pile of carriage returns."""

from __future__ import annotations

import re

import torch

from actdistill_ros.core.config import OptimConfig
from actdistill_ros.core.data.synthetic import make_dataset
from actdistill_ros.core.evaluation.bench import BenchConfig, benchmark
from actdistill_ros.core.model.checkpoint import default_student_path, default_teacher_path
from actdistill_ros.core.training.loop import run_loop

# "name:  40%|####      | 6/15 [00:01<00:02,  4.2step/s]": count, elapsed<ETA, rate
BAR = r"{name}: +\d+%\|.*\| {done}/{total} \[\d\d:\d\d<\d\d:\d\d, +[\d.?]+ ?{unit}/s"


def _bar_lines(err: str, name: str) -> list[str]:
    assert "\r" not in err, "a log gets whole lines"
    return [line for line in err.splitlines() if line.startswith(f"{name}:")]


def test_training_loop_draws_a_bar_with_rate_and_eta(tmp_path, capsys):
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(40, 4)

    def step(rows):
        loss = model(x[rows]).pow(2).mean()
        return loss, {"loss": loss.item()}

    run_loop("stage", tmp_path, {"m": model}, optimizer, OptimConfig(epochs=3, batch_size=8), 40, step)
    lines = _bar_lines(capsys.readouterr().err, "stage")
    assert lines and re.search(BAR.format(name="stage", done=15, total=15, unit="step"), lines[-1]), lines
    assert len(lines) <= 3, "a log gets the start, the end and a line per 30 s, not one per step"


def test_benchmark_draws_a_bar(tmp_path, capsys):
    make_dataset(6, steps=4, image_size=32, seed=0).save(tmp_path / "data")
    cfg = BenchConfig(device="cpu", warmup=1, latency_iters=3, curve_latency_iters=1, eval_samples=8)
    result = benchmark(default_teacher_path(), default_student_path(), tmp_path / "data", cfg)
    rounds = 1 + 3 + len(result["layer_frequency"]) * (2 + 1)
    lines = _bar_lines(capsys.readouterr().err, "benchmark")
    assert lines and re.search(BAR.format(name="benchmark", done=rounds, total=rounds, unit="round"), lines[-1]), lines


def test_a_redraw_of_the_same_state_is_not_logged_twice():
    import io

    from actdistill_ros.core.progress import _Lines

    log = io.StringIO()
    lines = _Lines(log)
    for text in ("\rstage:  50%| 1/2", "\rstage: 100%| 2/2", "\rstage: 100%| 2/2", "\n"):
        lines.write(text)
    assert log.getvalue() == "stage:  50%| 1/2\nstage: 100%| 2/2\n"
