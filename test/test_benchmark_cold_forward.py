"""benchmarks/cold_forward.py, the once-per-camera-frame cost: it runs on the shipped student and
teacher, writes a row per policy, idle mode and gap and the teacher / student ratios, refuses
arguments it can not measure with. No timing is asserted (how slow a pass after a pause is
belongs to the machine)."""

from __future__ import annotations

import json
import math

import pytest

from core_helpers import load_benchmark


@pytest.fixture(scope="module")
def cold_forward():
    return load_benchmark("cold_forward")


def test_runs_on_the_shipped_policies_and_writes_one_row_per_cell(cold_forward, tmp_path, capsys):
    out = tmp_path / "cold.json"
    assert cold_forward.main(["--rounds", "10", "--gaps", "2", "0", "--idle", "sleep", "busy",
                              "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["rounds"] == 10 and result["torch_threads"] == 1 and result["layers_total"] > 0
    assert result["checkpoints"] == {"student": "shipped", "teacher": "shipped"}  # no machine path in a JSON
    cells = [(r["policy"], r["idle"], r["gap_ms"]) for r in result["rows"]]
    assert cells == [(policy, idle, gap) for policy in ("student", "teacher") for idle in ("sleep", "busy")
                     for gap in (0, 2)]  # gaps sorted
    for r in result["rows"]:
        assert 0 < r["min_ms"] <= r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] and math.isfinite(r["p90_ms"])
        if r["gap_ms"] == 0:
            assert r["penalty_ms"] == 0.0  # the reference is each policy's and mode's smallest gap
    medians = {(r["policy"], r["idle"], r["gap_ms"]): r["median_ms"] for r in result["rows"]}
    assert len(result["speedups"]) == 4
    for r in result["speedups"]:
        assert r["speedup"] == pytest.approx(medians[("teacher", r["idle"], r["gap_ms"])]
                                             / medians[("student", r["idle"], r["gap_ms"])])
    printed = capsys.readouterr().out
    assert "| teacher | busy | 2 |" in printed and "speed-up" in printed


def test_student_only(cold_forward, tmp_path):
    out = tmp_path / "cold.json"
    assert cold_forward.main(["--rounds", "10", "--gaps", "0", "--idle", "sleep", "--no-teacher",
                              "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["policy"] for r in result["rows"]] == ["student"] and result["speedups"] == []


def test_penalty_is_against_each_policys_and_modes_own_reference(cold_forward):
    rows = cold_forward.rows({("student", "sleep", 1.0): [2.0, 2.0, 2.0], ("student", "sleep", 50.0): [3.0, 3.5, 4.0],
                              ("student", "busy", 1.0): [1.0, 1.0, 1.0], ("student", "busy", 50.0): [1.5, 1.5, 1.5],
                              ("teacher", "sleep", 1.0): [4.0, 4.0, 4.0], ("teacher", "sleep", 50.0): [5.0, 5.0, 5.0]})
    penalties = {(r["policy"], r["idle"], r["gap_ms"]): r["penalty_ms"] for r in rows}
    assert penalties == {("student", "sleep", 1.0): 0.0, ("student", "sleep", 50.0): 1.5,
                         ("student", "busy", 1.0): 0.0, ("student", "busy", 50.0): 0.5,
                         ("teacher", "sleep", 1.0): 0.0, ("teacher", "sleep", 50.0): 1.0}
    ratios = {(r["idle"], r["gap_ms"]): r["speedup"] for r in cold_forward.speedups(rows)}
    assert ratios == {("sleep", 1.0): 2.0, ("sleep", 50.0): pytest.approx(5.0 / 3.5)}  # no teacher cell, no ratio


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
        cold_forward.main(["--student", str(tmp_path / "nowhere"), "--rounds", "10"])


def test_a_teacher_given_as_the_student_is_refused(cold_forward, capsys):
    from actdistill_ros.core.model.checkpoint import default_teacher_path

    with pytest.raises(SystemExit) as exit_info:
        cold_forward.main(["--student", str(default_teacher_path()), "--rounds", "10"])
    assert exit_info.value.code == 2
    assert "is not a student checkpoint" in capsys.readouterr().err
