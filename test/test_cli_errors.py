"""Bad command lines: one line on stderr naming the problem, exit status 2, no traceback, and no
output directory left behind by a run that failed before producing anything."""

from __future__ import annotations

import pytest

from actdistill_ros.cli import main
from actdistill_ros.distill_job import load_distill_job_config

from demo_bags import DemoTopics, write_demo_bag

TOPICS = DemoTopics()


def _fails(capsys, argv: list[str], match: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    assert match in err[-1], err
    return err[-1]


def _distill(tmp_path, *extra: str) -> list[str]:
    return ["distill", "--set", f"instruction_topic={TOPICS.instruction}", "--set", f"image_topic={TOPICS.image}",
            "--set", f"action_topic={TOPICS.action}", "--set", "device=cpu", *extra]


def test_out_naming_an_existing_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _fails(capsys, _distill(tmp_path, "--bags", str(tmp_path), "--out", str(tmp_path / "file")),
           "output_dir: " + str(tmp_path / "file") + " exists and is not a directory")
    _fails(capsys, ["train-teacher", "--dataset", str(tmp_path), "--out", str(tmp_path / "file")],
           "no dataset.json")


@pytest.mark.parametrize(("value", "match"), [
    ("keep_ratio=[1, 2]]", "keep_ratio: '[1, 2]]' is not a valid list/mapping"),
    ("keep_ratio=[1", "keep_ratio: must be a number, got '[1'"),
    ("=3", "override '=3': empty key"),
    ("epochs=many", "epochs: must be an integer, got 'many'"),
])
def test_bad_set_values(tmp_path, capsys, value, match):
    _fails(capsys, _distill(tmp_path, "--bags", str(tmp_path), "--out", str(tmp_path / "out"), "--set", value), match)
    assert not (tmp_path / "out").exists()


def test_text_values_keep_hashes_and_brackets(tmp_path):
    cfg = load_distill_job_config(None, ["bags=/b", f"output_dir={tmp_path}", "instruction=pick the cube # the red one",
                                         "keep_ratio=0.3", "epochs=4", "baselines=true"])
    assert cfg.instruction == "pick the cube # the red one"
    assert (cfg.keep_ratio, cfg.epochs, cfg.baselines) == (0.3, 4, True)
    cfg = load_distill_job_config(None, ["bags=[/a, /b]", f"output_dir={tmp_path}", "instruction=[red] cube first"])
    assert (cfg.instruction, cfg.bag_list) == ("[red] cube first", ["/a", "/b"])
    cfg = load_distill_job_config(None, ["bags=/b", f"output_dir={tmp_path}", "instruction_topic='0.5'"])
    assert cfg.instruction_topic == "0.5", "quotes force text"


@pytest.mark.parametrize("case", ["missing_bags", "only_corrupt_bags", "missing_dataset"])
def test_a_failed_start_leaves_no_output_directory(tmp_path, capsys, case):
    out = tmp_path / "out"
    if case == "missing_bags":
        _fails(capsys, _distill(tmp_path, "--bags", str(tmp_path / "nope"), "--out", str(out)), "does not exist")
    elif case == "only_corrupt_bags":
        bag = tmp_path / "bags" / "broken"
        write_demo_bag(bag, "mcap", num_frames=10)
        storage = next(bag.glob("*.mcap"))
        storage.write_bytes(storage.read_bytes()[:200])
        _fails(capsys, _distill(tmp_path, "--bags", str(tmp_path / "bags"), "--out", str(out)), "broken")
    else:
        _fails(capsys, ["train-teacher", "--dataset", str(tmp_path / "nope"), "--out", str(out)], "no dataset.json")
    assert not out.exists()


def test_repeated_bags_add_up(tmp_path, capsys):
    """The first of two --bags is used too (it used to be replaced by the second): a missing one is named."""
    write_demo_bag(tmp_path / "good", "mcap", num_frames=10)
    _fails(capsys, _distill(tmp_path, "--bags", str(tmp_path / "nope"), "--bags", str(tmp_path / "good"),
                            "--out", str(tmp_path / "out")), "nope: does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "match"), [
    (["eval", "--episodes", "0"], "actdistill eval: error: episodes: must be > 0, got 0"),
    (["sim-demos", "--out", "{tmp}/demos", "--image-size", "0"], "image_size: must be > 0, got 0"),
    (["sim-demos", "--out", "{tmp}/demos", "--real-time-factor", "-1"], "real_time_factor: must be > 0, got -1.0"),
    (["sim-demos", "--out", "{tmp}/demos", "--tasks", "reach,push"], "tasks: unknown task(s) ['push']; known:"),
    (["eval", "--tasks", "stack"], "tasks: unknown task(s) ['stack']"),
    (["sim-job", "--out", "{tmp}/demos", "--tasks", "between"],
     "tasks ['between_green_blue', 'between_red_blue', 'between_red_green']: the shipped teacher was trained on the "
     "'reach' suite only; add --train-teacher"),
    (["bench", "--teacher", "t", "--student", "s", "--dataset", "d", "--iters", "0"],
     "latency_iters: must be > 0, got 0"),
])
def test_sim_and_bench_settings_are_checked_by_their_fields(tmp_path, capsys, argv, match):
    """The eval/record/bench configs are typed configs too: a bad flag is one line before anything runs."""
    _fails(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv], match)
    assert not (tmp_path / "demos").exists()
