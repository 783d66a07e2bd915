"""benchmarks/camera_reconnect.py: camera processes that end (cleanly, then killed) and are replaced
while the policy node runs in autonomy: the node commands again on every new camera and stops the arm
after each one ends (the node's stale-image promise, seen from its status); bad arguments are refused.
No timing is asserted (it belongs to the machine)."""

from __future__ import annotations

import json

import pytest

from core_helpers import load_benchmark
from policy_node_helpers import default_domain_id


@pytest.fixture(scope="module")
def reconnect():
    return load_benchmark("camera_reconnect")


@pytest.mark.ros
def test_the_node_commands_on_each_new_camera_and_stops_after_each_ends(reconnect, tmp_path):
    out = tmp_path / "reconnect.json"
    assert reconnect.main(["--width", "64", "--height", "48", "--image-rate", "10", "--cameras", "2",
                           "--on-s", "1", "--gap-s", "1.2", "--end", "alternate",
                           "--domain-id", str(default_domain_id()), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["camera"], r["after"], r["end"]) for r in rows] == [(0, None, "clean"), (1, "clean", "kill")]
    for r in rows:
        assert r["ready_to_commanding_s"] is not None and r["ready_to_commanding_s"] >= 0, r
        assert r["ended_to_stop_s"] is not None and r["ended_to_stop_s"] >= 0, r
        assert bool(r["alarms_while_on"]) == bool(r["alarm_reasons_while_on"]), r  # stops name their reasons
    assert any("published" in line for line in rows[0]["camera_output"]), "a clean end lets the camera report"
    assert result["node"] == {"checkpoint": "<shipped>", "device": "cpu", "control_rate_hz": 10.0,
                              "image_timeout_s": 0.5, "exit_code": 0}
    assert result["discovery_range"] == "LOCALHOST"


def test_which_end_each_camera_gets(reconnect):
    assert [reconnect.end_of(k, "alternate") for k in range(4)] == ["clean", "kill", "clean", "kill"]
    assert [reconnect.end_of(k, "kill") for k in range(2)] == ["kill", "kill"]


@pytest.mark.parametrize(("args", "named"), [
    (["--cameras", "0"], "--cameras"),
    (["--gap-s", "0.4", "--image-timeout", "0.5"], "--gap-s"),
    (["--on-s", "0"], "--on-s"),
    (["--dds-profile", "no_such_profile.xml"], "--dds-profile"),
])
def test_bad_arguments_are_refused_by_name(reconnect, capsys, args, named):
    with pytest.raises(SystemExit) as exit_info:
        reconnect.main(args)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
