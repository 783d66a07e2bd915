"""Baselines beside the student: greedy static pruning (tuned and untuned) and random routes, at the
student's layer count and stage-2 budget, exported as student checkpoints the policy runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from actdistill_ros.core.config import OptimConfig, RouterConfig
from actdistill_ros.core.data.dataset import EpisodeDataset
from actdistill_ros.core.model.checkpoint import load_student, load_teacher
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.policy import load_policy
from actdistill_ros.core.training.baselines import (
    GreedySelection,
    GreedyStep,
    finetune_routed,
    fixed_route_student,
    greedy_layer_selection,
    progressive_route,
    random_route_student,
    set_route,
)
from actdistill_ros.core.training.loop import batches_per_epoch
from actdistill_ros.core.training.runs import baseline_layer_count, read_finished_job
from actdistill_ros.core.training.stages import build_tensor_data, evaluate
from actdistill_ros.core.typed_config import ConfigError
from actdistill_ros.distill_job import config_from_mapping, run_distill_job
from actdistill_ros.distill_job.job import train_samples
from actdistill_ros.distill_job.report import baseline_verdict

from core_helpers import TINY, tiny_inputs, tiny_teacher
from test_distill_job import build_demo, job_mapping


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("baselines_demo"))


def test_fixed_and_random_routers_run_exactly_their_layers():
    teacher = tiny_teacher()
    inputs = tiny_inputs(teacher, batch=5)
    fixed = fixed_route_student(teacher, [3, 1])
    assert fixed.forward_routed(inputs).executed.tolist() == [[False, True, False, True]] * 5
    torch.manual_seed(0)
    random = random_route_student(teacher, 2).eval()
    executed = torch.cat([random.forward_routed(inputs).executed for _ in range(4)])
    assert executed.sum(1).tolist() == [2] * 20
    assert len({tuple(row.tolist()) for row in executed}) > 1  # routes differ between samples and passes
    with pytest.raises(ConfigError, match="fixed_layers"):
        fixed_route_student(teacher, [4])
    with pytest.raises(ConfigError, match="random_layers"):
        RouterConfig(kind="random").validate()


def test_greedy_selection_drops_the_cheapest_layer_each_time(demo):
    teacher = load_teacher(demo.teacher)
    data = build_tensor_data(EpisodeDataset.load(demo.dataset), teacher)
    selection = greedy_layer_selection(teacher, data, 2)
    assert len(selection.layers) == 2 and [len(s.kept) for s in selection.trace] == [3, 2]
    # the last step chose the best 2-of-3 subset of what the first step kept
    first_kept = selection.trace[0].kept
    errors = {tuple(sorted(c)): evaluate(fixed_route_student(teacher, list(c)), data, routed=True)["action_mse"]
              for c in itertools.combinations(first_kept, 2)}
    assert tuple(selection.layers) == min(errors, key=errors.get)
    assert selection.trace[-1].action_mse == pytest.approx(min(errors.values()))


def test_finetune_leaves_frozen_parts_as_they_are(demo, tmp_path):
    teacher = load_teacher(demo.teacher)
    data = build_tensor_data(EpisodeDataset.load(demo.dataset), teacher)
    student = fixed_route_student(teacher, [0, 2])
    before = {name: p.detach().clone() for name, p in student.backbone.named_parameters()}
    result = finetune_routed(student, data, OptimConfig(epochs=1, batch_size=8, lr=1e-2), tmp_path, "tuned",
                             frozen=(student.backbone.vision, student.backbone.text_embedding))
    changed = {name for name, p in result.model.backbone.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith(("layers.", "final_norm", "action_head")) for name in changed)
    assert any(name.startswith("layers.0.") for name in changed)


def test_progressive_route_drops_layers_in_greedy_order_over_the_warmup():
    selection = GreedySelection([1], [GreedyStep(3, [0, 1, 2], 0.1), GreedyStep(0, [1, 2], 0.2),
                                      GreedyStep(2, [1], 0.3)])
    routes = [progressive_route(selection, 4, step / 100, warmup=0.3) for step in range(100)]
    assert routes[0] == [0, 1, 2, 3] and routes[29] == [1] and all(r == [1] for r in routes[30:])
    counts = [len(r) for r in routes]
    assert counts == sorted(counts, reverse=True) and set(counts) == {1, 2, 3, 4}  # one layer at a time
    assert [0, 1, 2] in routes and [1, 2] in routes  # each count's set is the one the greedy search kept
    assert progressive_route(selection, 4, 0.0, warmup=0.0) == [1]  # no warm-up: the final set throughout


def test_finetune_follows_a_route_schedule_and_ends_on_the_fixed_set(demo, tmp_path):
    teacher = load_teacher(demo.teacher)
    data = build_tensor_data(EpisodeDataset.load(demo.dataset), teacher)
    selection = greedy_layer_selection(teacher, data, 1)
    student = fixed_route_student(teacher, selection.layers)
    seen = []

    def schedule(step: int, total: int) -> None:
        route = progressive_route(selection, teacher.num_layers, step / total, warmup=0.5)
        set_route(student, route)
        seen.append(len(route))

    result = finetune_routed(student, data, OptimConfig(epochs=2, batch_size=8, lr=1e-3), tmp_path, "warm",
                             on_step=schedule)
    assert seen[0] == teacher.num_layers and seen[-1] == 1 and seen == sorted(seen, reverse=True)
    assert result.model.router.route.nonzero().flatten().tolist() == selection.layers


def test_a_ranked_router_starts_every_input_on_the_top_level_and_warms_up_in_rank_order():
    selection = GreedySelection([1, 3], [GreedyStep(2, [0, 1, 3], 0.1), GreedyStep(0, [1, 3], 0.2)])
    assert selection.levels() == [[1, 3], [0], [2]]  # kept, then the last dropped first
    teacher = tiny_teacher()
    inputs = tiny_inputs(teacher, batch=6)
    student = RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8, min_layers=2, init_route="greedy"))
    student.router.rank_layers(selection.levels())
    student.set_budget(max_layers=2)
    assert student.eval().forward_routed(inputs).executed.tolist() == [[False, True, False, True]] * 6
    # stage 2's warm-up cut at 3 of 4 layers keeps the next level for every input, not a random layer
    gates = student.train().forward_train(inputs, decode_actions=False, keep_ratio=0.75).gates
    assert (gates > 0.5).tolist() == [[True, True, False, True]] * 6
    with pytest.raises(ConfigError, match="init_route"):
        RouterConfig(init_route="best").validate()
    with pytest.raises(ConfigError, match="init_route"):
        RouterConfig(kind="fixed", fixed_layers=[0], init_route="greedy").validate()


def test_a_greedy_started_router_and_the_baselines_share_one_layer_search(demo, tmp_path):
    out = tmp_path / "out"
    mapping = job_mapping(demo, out, bags="", dataset=str(demo.dataset), baselines=True, keep_ratio=0.5)
    mapping["distill"]["router"].update(min_layers=2, init_route="greedy")
    events: list[dict] = []
    assert run_distill_job(config_from_mapping(mapping), progress=events.append).finished
    selection = json.loads((out / "runs" / "baseline_selection.json").read_text())
    assert selection["layers_per_pass"] == 2 and len(selection["layers"]) == 2
    assert load_student(out / "baselines" / "static").router.cfg.fixed_layers == selection["layers"]
    searches = [e for e in events if "ranking the layers" in str(e.get("message", ""))]
    assert len(searches) == 1 and searches[0]["stage"] == "student"  # the baselines reused it


def test_baseline_layer_count_rounds_the_students_mean():
    assert baseline_layer_count(0.5, 6) == 3
    assert baseline_layer_count(0.42, 6) == 3  # 2.52 layers
    assert baseline_layer_count(0.0, 6) == 1


def test_job_trains_baselines_at_the_students_layer_count_with_the_same_budget(demo, tmp_path):
    out = tmp_path / "out"
    cfg = config_from_mapping(job_mapping(demo, out, bags="", dataset=str(demo.dataset), baselines=True))
    events: list[dict] = []
    result = run_distill_job(cfg, progress=events.append)
    assert result.finished
    report = json.loads(result.report_json.read_text())
    layers = baseline_layer_count(report["held_out"]["executed_layer_fraction"], TINY.num_layers)
    assert set(report["baselines"]) == {"static", "static_untuned", "random"}
    selection = json.loads((out / "runs" / "baseline_selection.json").read_text())
    assert selection["layers_per_pass"] == layers and len(selection["layers"]) == layers
    for name, numbers in report["baselines"].items():
        # every baseline runs exactly the student's (rounded) layer count on every held-out sample
        assert numbers["executed_layer_fraction"] == pytest.approx(layers / TINY.num_layers)
        info = json.loads((out / "baselines" / name / "config.json").read_text())
        assert info["baseline"]["layers_per_pass"] == layers
        policy = load_policy(out / "baselines" / name, device="cpu")
        act = policy.act(np.full((32, 32, 3), 100, np.uint8), "push the blue cube")
        assert act.layers_executed == layers and np.isfinite(act.actions).all()
    assert load_student(out / "baselines" / "static").router.kind == "fixed"
    # read back for analysis (benchmarks/*.py): the same split the job's stages used
    finished = read_finished_job(out, demo.teacher, demo.dataset)
    assert len(finished.held_out) == report["held_out"]["held_out_samples"]
    assert len(finished.train) == train_samples(Path(demo.dataset), cfg.distill_config().held_out_fraction)
    assert load_student(out / "baselines" / "random").router.cfg.random_layers == layers
    # the same fine-tuning budget as stage 2; the untuned one keeps the teacher's weights
    dcfg = cfg.distill_config()
    total = dcfg.student.epochs * batches_per_epoch(train_samples(Path(demo.dataset), dcfg.held_out_fraction),
                                                    dcfg.student.batch_size)
    for name in ("static", "random"):
        assert len((out / "runs" / f"baseline_{name}_metrics.jsonl").read_text().splitlines()) == total
    teacher = load_file(str(Path(demo.teacher) / "model.safetensors"))
    untuned = load_file(str(out / "baselines" / "static_untuned" / "model.safetensors"))
    tuned = load_file(str(out / "baselines" / "static" / "model.safetensors"))
    key = "layers.0.mlp.down_proj.weight"
    assert torch.equal(untuned[f"backbone.{key}"], teacher[key])
    assert not torch.equal(tuned[f"backbone.{key}"], teacher[key])
    markdown = result.report_md.read_text()
    assert "## Baselines" in markdown and "static_untuned" in markdown
    assert any(e["stage"] == "baselines" and e["state"] == "done" for e in events)
    # the verdict: the pure rule's answer on the report's own numbers, in report.json, .md and on the console
    assert report["baseline_verdict"] == baseline_verdict(report) and report["baseline_verdict"]
    assert f"**Verdict:** {report['baseline_verdict']}." in markdown
    assert [e["message"] for e in events if e["state"] == "verdict"] == [report["baseline_verdict"]]
    # a rerun reuses everything
    again = json.loads(run_distill_job(cfg).report_json.read_text())
    assert again["baselines"].keys() == report["baselines"].keys()


def _numbers(error: float, flops: float = 0.43, checkpoint: str = "out/baselines/x") -> dict:
    return {"action_error_ratio": error, "flops_ratio": flops, "checkpoint": checkpoint}


def test_verdict_names_a_baseline_that_beats_the_router_and_where_to_find_it():
    report = {"action_error_ratio": 1.35, "flops_ratio": 0.44,
              "baselines": {"static": _numbers(1.03, checkpoint="out/baselines/static"), "random": _numbers(1.27),
                            "static_untuned": _numbers(1.87)}}
    verdict = baseline_verdict(report)
    assert verdict.startswith("baseline 'static' beats the routed student") and "out/baselines/static" in verdict
    assert "1.030 vs 1.350" in verdict


def test_verdict_for_a_router_that_wins_a_tie_and_no_baselines():
    assert baseline_verdict({"action_error_ratio": 1.0, "flops_ratio": 0.44,
                             "baselines": {"static": _numbers(1.2)}}).startswith("the routed student beats every")
    assert "within 5%" in baseline_verdict({"action_error_ratio": 1.0, "flops_ratio": 0.44,
                                            "baselines": {"static": _numbers(0.98)}})
    assert baseline_verdict({"action_error_ratio": 1.0, "flops_ratio": 0.44, "baselines": {}}) is None
    # a baseline that spends more compute than the student is no rival
    assert baseline_verdict({"action_error_ratio": 1.3, "flops_ratio": 0.44,
                             "baselines": {"static": _numbers(1.0, flops=0.6)}}) is None


def test_spread_takes_evenly_spaced_samples_from_first_to_last(demo):
    teacher = load_teacher(demo.teacher)
    data = build_tensor_data(EpisodeDataset.load(demo.dataset), teacher)
    picked = data.spread(5)
    ids = data.sample_ids.tolist()
    positions = [ids.index(i) for i in picked.sample_ids.tolist()]
    assert len(picked) == 5 and positions[0] == 0 and positions[-1] == len(data) - 1
    gaps = [b - a for a, b in zip(positions[:-1], positions[1:], strict=True)]
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    assert torch.equal(picked.targets, data.targets[positions])
    assert data.spread(len(data) + 10) is data
