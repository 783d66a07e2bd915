"""benchmarks/policy_transfers.py, the host <-> device copies of one policy.act(): it runs on a CPU
(nothing to count there: the GPU run is benchmarks/gpu_routing.sh's), counts the profiler's copy
and wait events per frame, and refuses a CUDA device that is not there."""

from __future__ import annotations

import json

import pytest
import torch

from core_helpers import load_benchmark


@pytest.fixture(scope="module")
def transfers():
    return load_benchmark("policy_transfers")


def test_counts_copies_by_kind_and_host_waits_per_frame(transfers):
    names = ["Memcpy HtoD (Pinned -> Device)", "aten::copy_", "Memcpy DtoH (Device -> Pageable)",
             "cudaStreamSynchronize", "Memcpy DtoH (Device -> Pageable)", "cudaLaunchKernel",
             "Memcpy HtoD (Pinned -> Device)", "cudaStreamSynchronize"]
    assert transfers.count_events(names, frames=2) == {"Memcpy DtoH (Device -> Pageable)": 1.0,
                                                       "Memcpy HtoD (Pinned -> Device)": 1.0,
                                                       "cudaStreamSynchronize": 1.0}


def test_runs_on_a_cpu_with_both_policies(transfers, tmp_path, capsys):
    out = tmp_path / "transfers.json"
    assert transfers.main(["--device", "cpu", "--frames", "3", "--warmup", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["frames"] == 3 and set(result["policies"]) == {"student", "teacher"}
    for row in result["policies"].values():
        assert row["per_frame"] == {}  # host memory only: no device copies, no waits
        assert row["act_ms_median"] > 0
    assert result["speedup_act_median"] == pytest.approx(result["policies"]["teacher"]["act_ms_median"]
                                                          / result["policies"]["student"]["act_ms_median"])
    assert "speed-up" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal where there is no CUDA device")
def test_refuses_a_cuda_device_that_is_not_there(transfers, capsys):
    with pytest.raises(SystemExit) as exc:
        transfers.main(["--device", "cuda", "--frames", "1"])
    assert exc.value.code == 2 and "CUDA is not available" in capsys.readouterr().err
