"""benchmarks/policy_node_latency.py: a short real run (the node in its own process, images over
Fast DDS) writes the split the README reads (transport, the node beyond its forward, the overhead
against the back-to-back and the paced forward), one entry per acted-on image in the series, the
paced forward call by call, the node's CPU time thread by thread, the extra node parameters it was
given, and no machine path; an interleaved run pairs each node window with the paced forward after it; a malformed
``--node-param`` or an impossible ``--interleave`` is refused. No timing is asserted (it belongs to the machine)."""

from __future__ import annotations

import json
import statistics
import sys

import pytest

from core_helpers import load_benchmark
from policy_node_helpers import default_domain_id


@pytest.fixture(scope="module")
def latency():
    return load_benchmark("policy_node_latency")


@pytest.mark.ros
def test_a_short_run_writes_the_split_the_series_and_the_node_params(latency, tmp_path):
    out = tmp_path / "latency.json"
    assert latency.main(["--random", "test", "--device", "cpu", "--duration", "3", "--settle", "1",
                         "--forward-iterations", "12", "--torch-threads", "1", "--domain-id", str(default_domain_id()),
                         "--node-param", "diagnostics_rate_hz:=0.0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["checkpoint"] == "<random test>" and result["node_source"] == "."
    assert result["node_params"] == {"diagnostics_rate_hz": 0.0}
    node = result["node"]
    assert node["images_acted_on"] > 0 and node["transport_ms"]["n"] > 0
    assert 0 < node["transport_ms"]["median"] < node["image_to_ready_ms"]["median"]
    series = node["image_to_ready_series"]
    assert len(series) == node["image_to_ready_ms"]["n"]
    assert [t for t, _, _ in series] == sorted(t for t, _, _ in series)  # publication order
    assert all(ready > forward > 0 for _, ready, forward in series)  # ready includes the node's own forward
    assert len(result["forward_paced_series_ms"]) == 12 and "series_ms" not in result["forward"]
    assert result["forward_paced_ms"]["median"] == pytest.approx(
        statistics.median(result["forward_paced_series_ms"]), abs=1e-3)  # the series is the calls summarised
    assert result["pipeline_overhead_vs_paced_ms_median"] == pytest.approx(
        node["image_to_ready_ms"]["median"] - result["forward_paced_ms"]["median"])
    if sys.platform == "linux":  # the node's CPU by thread: the worker found by the name the node gave it
        cpu = node["thread_cpu_ms_per_s"]
        assert set(cpu) == set(latency.THREAD_ROLES) and cpu["executor"] > 0 and cpu["inference"] > 0, cpu
        assert node["windows"][0]["thread_cpu_ms_per_s"] == cpu  # one window: the same seconds


@pytest.mark.ros
def test_an_interleaved_run_pairs_each_node_window_with_the_paced_forward_after_it(latency, tmp_path):
    out = tmp_path / "interleaved.json"
    assert latency.main(["--random", "test", "--device", "cpu", "--duration", "4", "--settle", "1",
                         "--interleave", "2", "--image-rate", "5", "--forward-iterations", "6",
                         "--torch-threads", "1", "--domain-id", str(default_domain_id()), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    inter, node = result["interleaved"], result["node"]
    assert result["paced_reference"] == "interleaved with the node windows"
    assert inter["windows"] == 2 and inter["calls_per_paced_window"] == 10  # 5 Hz x 2 s
    assert len(result["forward_paced_series_ms"]) == 20  # the paced calls of both windows, not a separate run
    windows = node["windows"]
    assert len(windows) == 2 and len(inter["pairs"]) == 2
    first, second = windows
    # the second window opens after the first one's paced forward (2 s at 5 Hz) and a resettle
    assert first["open_s"] == 0 and second["open_s"] > first["close_s"] + 2.0
    assert all(w["image_to_ready_ms"]["n"] > 0 for w in windows)
    assert sum(w["image_to_ready_ms"]["n"] for w in windows) == node["image_to_ready_ms"]["n"]
    # images of the gap (none are published there) and of the resettle are not counted
    assert not any(first["close_s"] < t < second["open_s"] for t, _, _ in node["image_to_ready_series"])
    paced_by_window = (result["forward_paced_series_ms"][:10], result["forward_paced_series_ms"][10:])
    for pair, window, calls in zip(inter["pairs"], windows, paced_by_window, strict=True):
        assert pair["image_to_ready_median_ms"] == window["image_to_ready_ms"]["median"]
        assert pair["paced_forward_median_ms"] == pytest.approx(statistics.median(calls), abs=1e-3)
        assert pair["overhead_ms"] == pytest.approx(pair["image_to_ready_median_ms"] - pair["paced_forward_median_ms"])
    assert inter["overhead_ms_median_of_pairs"] == pytest.approx(
        statistics.median(p["overhead_ms"] for p in inter["pairs"]))
    # control periods only within windows: no period spans the gap between them
    assert node["control_period_ms"]["max"] < 1000.0


@pytest.mark.parametrize("argv, message", [
    (["--interleave", "1"], "give 2 or more windows"),
    (["--interleave", "30", "--duration", "20"], "each needs at least 1 s"),
    (["--interleave", "2", "--camera-process"], "--interleave needs the images from this process"),
    (["--interleave", "2", "--set-max-layers-hz", "5"], "--interleave needs the images from this process"),
])
def test_an_impossible_interleave_is_refused(latency, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        latency.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("item, message", [
    ("diagnostics_rate_hz=0", "expected NAME:=VALUE"),
    (":=3", "expected NAME:=VALUE"),
    ("max_layers:=[1", "the value is not YAML"),
])
def test_a_malformed_node_param_is_refused(latency, item, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        latency.main(["--node-param", item])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_node_params_are_typed_as_ros2_run_reads_them(latency):
    import argparse

    parsed = latency.node_params(argparse.ArgumentParser(), ["a:=0.5", "b:=true", "c:=3", "d:=cuda"])
    assert parsed == {"a": 0.5, "b": True, "c": 3, "d": "cuda"}
