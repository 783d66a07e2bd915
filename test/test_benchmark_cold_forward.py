"""benchmarks/cold_forward.py, the once-per-camera-frame cost: it runs on the shipped student, writes
a table per idle mode and gap, refuses arguments it can not measure with. No timing is asserted
(how slow a pass after a pause is belongs to the machine)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cold_forward.py"


@pytest.fixture(scope="module")
def cold_forward():
    spec = importlib.util.spec_from_file_location("cold_forward", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runs_on_the_shipped_student_and_writes_one_row_per_mode_and_gap(cold_forward, tmp_path, capsys):
    out = tmp_path / "cold.json"
    assert cold_forward.main(["--rounds", "10", "--gaps", "2", "0", "--idle", "sleep", "busy",
                              "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rounds"] == 10 and result["torch_threads"] == 1 and result["layers_total"] > 0
    cells = [(r["idle"], r["gap_ms"]) for r in result["rows"]]
    assert cells == [("sleep", 0), ("sleep", 2), ("busy", 0), ("busy", 2)]  # gaps sorted
    for r in result["rows"]:
        assert 0 < r["min_ms"] <= r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] and math.isfinite(r["p90_ms"])
        if r["gap_ms"] == 0:
            assert r["penalty_ms"] == 0.0  # the reference is each mode's smallest gap
    assert "| busy | 2 |" in capsys.readouterr().out


def test_penalty_is_against_each_modes_own_reference(cold_forward):
    rows = cold_forward.rows({("sleep", 1.0): [2.0, 2.0, 2.0], ("sleep", 50.0): [3.0, 3.5, 4.0],
                              ("busy", 1.0): [1.0, 1.0, 1.0], ("busy", 50.0): [1.5, 1.5, 1.5]})
    penalties = {(r["idle"], r["gap_ms"]): r["penalty_ms"] for r in rows}
    assert penalties == {("sleep", 1.0): 0.0, ("sleep", 50.0): 1.5, ("busy", 1.0): 0.0, ("busy", 50.0): 0.5}


@pytest.mark.parametrize("argv, message", [(["--rounds", "3"], "--rounds must be at least 10"),
                                           (["--gaps", "-1"], "--gaps must be >= 0"),
                                           (["--idle", "nap"], "invalid choice: 'nap'")])
def test_bad_arguments_are_named(cold_forward, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cold_forward.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_checkpoint_is_an_error_naming_it(cold_forward, tmp_path):
    from actdistill_ros.core.model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="checkpoint not found: .*nowhere"):
        cold_forward.main(["--checkpoint", str(tmp_path / "nowhere"), "--rounds", "10"])
