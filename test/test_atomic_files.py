"""Files the next stage reads are replaced whole or not at all (core/atomic_files.py)."""

import json
from pathlib import Path

import pytest

from actdistill_ros.core.atomic_files import write_atomically, write_json_atomic


def test_json_is_written_whole_and_paths_are_made_strings(tmp_path):
    path = write_json_atomic(tmp_path / "report.json", {"dir": tmp_path, "n": 1}, default=str)
    assert path == tmp_path / "report.json"
    assert json.loads(path.read_text()) == {"dir": str(tmp_path), "n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"], "no temporary file is left"


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "marker.json"
    write_json_atomic(path, {"version": 1})

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text('{"version": 2, "trunc')
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, half_then_fail)
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["marker.json"]


def test_an_unserialisable_value_fails_before_touching_the_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
