"""benchmarks/routing_overhead.py, issue 13's efficiency benchmark: the JSON holds the rows the
issue names (keep ratio, layers executed, teacher, student, ideal, efficiency) with the ideal
computed from the parts timed in the same run, and arguments it can not measure with are refused.
No timing is asserted (how fast a pass is belongs to the machine)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from core_helpers import load_benchmark


@pytest.fixture(scope="module")
def routing_overhead():
    return load_benchmark("routing_overhead")


def test_writes_the_issues_rows_with_the_ideal_from_the_same_run(routing_overhead, tmp_path, capsys):
    out = tmp_path / "routing.json"
    assert routing_overhead.main(["--shape", "shipped", "--keep", "1", "0.5", "0.25", "--warmup", "1",
                                  "--iters", "3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["shape"], result["layers_total"], result["hidden_size"]) == ("shipped", 6, 128)
    assert result["device"] == "cpu" and result["execution"] == "eager" and result["batch"] == 1
    assert "/" not in json.dumps({k: v for k, v in result.items() if k != "torch"})  # no machine path
    assert [r["keep_ratio"] for r in result["rows"]] == [1.0, 0.5, 0.25]
    # the run-time cap sets the route: round(keep x 6) layers, never fewer than one
    assert [r["layers_executed"] for r in result["rows"]] == [6.0, 3.0, 2.0]
    for r in result["rows"]:
        for stats in (r, r["min"]):
            assert all(math.isfinite(v) and v > 0 for k, v in stats.items() if k.endswith("_ms"))
            fixed, teacher = stats["fixed_ms"], stats["teacher_ms"]
            assert stats["ideal_ms"] == pytest.approx(fixed + (teacher - fixed) * r["layers_executed"] / 6)
            assert stats["efficiency"] == pytest.approx(stats["ideal_ms"] / stats["student_ms"])
            assert stats["speedup"] == pytest.approx(teacher / stats["student_ms"])
    assert result["rows"][0]["ideal_ms"] == pytest.approx(result["rows"][0]["teacher_ms"])  # keep 1: the teacher
    assert 0 < result["router_flops_share_of_layers"] < 0.05
    printed = capsys.readouterr().out
    assert "| 0.25 | 2.00 |" in printed and "router FLOPs" in printed


def test_row_counts_only_the_layers_share_of_the_teacher_as_skippable(routing_overhead):
    times = {"teacher": [10.0], "student": [6.0], "static": [5.0], "embed": [1.5], "head": [0.5], "router": [0.4]}
    r = routing_overhead.row(times, min, executed=2, num_layers=4, router_share=0.01)
    assert r["fixed_ms"] == 2.0 and r["ideal_ms"] == 2.0 + 8.0 * 2 / 4  # embedding + head paid once
    assert r["efficiency"] == pytest.approx(6.0 / 6.0) and r["efficiency_vs_static"] == pytest.approx(5.0 / 6.0)
    assert r["static_vs_ideal"] == pytest.approx(6.0 / 5.0) and r["ideal_speedup"] == pytest.approx(10.0 / 6.0)
    assert r["ideal_with_router_ms"] == pytest.approx(6.0 + 8.0 * 0.01)


@pytest.mark.parametrize("argv, message", [
    (["--keep", "0"], "--keep ratios must be in (0, 1], got [0.0]"),
    (["--keep", "1", "1.5"], "--keep ratios must be in (0, 1], got [1.5]"),
    (["--iters", "2"], "--iters must be at least 3"),
    (["--warmup", "-1"], "--warmup must be >= 0"),
    (["--batch", "0"], "--batch must be >= 1"),
    (["--bandwidth-tbs", "-4.8"], "--bandwidth-tbs must be >= 0"),
    (["--shape", "huge"], "invalid choice: 'huge'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_arguments_are_named(routing_overhead, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        routing_overhead.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda", "--iters", "3"], "--device cuda: CUDA is not available here"),
    (["--execution", "cuda_graphs", "--iters", "3"], "execution 'cuda_graphs' needs a CUDA device"),
])
def test_no_cuda_is_refused_not_measured_on_the_cpu(routing_overhead, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        routing_overhead.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
