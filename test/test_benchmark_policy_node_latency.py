"""benchmarks/policy_node_latency.py: a short real run (the node in its own process, images over
Fast DDS) writes the split the README reads (transport, the node beyond its forward, the overhead
against the back-to-back and the paced forward), one entry per acted-on image in the series, the
paced forward call by call, the extra node parameters it was given, and no machine path; a
malformed ``--node-param`` is refused. No timing is asserted (it belongs to the machine)."""

from __future__ import annotations

import json
import statistics

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
