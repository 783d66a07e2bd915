"""The compute budget: the tracked router threshold, calibration, collapse warnings, no empty stack."""

import numpy as np
import pytest
import torch

from actdistill_ros.core.config import DistillConfig, GraphConfig, LossConfig, OptimConfig, RouterConfig
from actdistill_ros.core.data.dataset import Episode, EpisodeDataset
from actdistill_ros.core.model.graph import LayerProbes
from actdistill_ros.core.model.router import Router, budget_offset, hard_decisions
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.training.route_stats import route_statistics, routing_warnings
from actdistill_ros.core.training.stages import build_tensor_data, calibrate_router, distill_student, record_teacher
from actdistill_ros.core.typed_config import ConfigError

from core_helpers import TINY, tiny_inputs, tiny_student, tiny_teacher


def _data(teacher, episodes=6, steps=8, seed=0):
    rng = np.random.default_rng(seed)
    colours = ["red", "green", "blue"]
    eps = [Episode(rng.integers(0, 255, (steps, TINY.image_size, TINY.image_size, 3), dtype=np.uint8),
                   rng.normal(0, 0.01, (steps, 7)).astype(np.float32), f"move to the {colours[e % 3]} cube")
           for e in range(episodes)]
    return build_tensor_data(EpisodeDataset(eps), teacher)


def test_keep_target_falls_from_one_to_the_keep_ratio_over_the_warmup():
    cfg = LossConfig(keep_ratio=0.5, budget_warmup=0.4)
    assert cfg.keep_target(0.0) == 1.0
    assert cfg.keep_target(0.2) == pytest.approx(0.75)
    assert cfg.keep_target(0.4) == cfg.keep_target(0.9) == 0.5
    assert LossConfig(keep_ratio=0.3, budget_warmup=0.0).keep_target(0.0) == 0.3


def test_the_threshold_follows_the_batch_cuts_that_meet_the_budget():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    assert budget_offset(logits, 0.5, min_layers=1) == pytest.approx(2.5)  # midway between kept and dropped
    assert budget_offset(logits, 0.75, min_layers=1) == pytest.approx(1.5)
    router = Router(16, 4, RouterConfig(router_dim=4))
    router.track_offset(2.5, momentum=0.5)
    assert router.logit_offset.item() == pytest.approx(1.25)
    for _ in range(30):
        router.track_offset(budget_offset(logits, 0.5, min_layers=1), momentum=0.5)
    probs = torch.sigmoid(logits - router.logit_offset)
    assert hard_decisions(probs, 0.5, min_layers=1).tolist() == [[True, True, False, False]] * 2


def test_training_batches_spend_exactly_the_keep_ratio():
    student = tiny_student().train()
    out = student.forward_train(tiny_inputs(student.backbone, batch=6), keep_ratio=0.5)
    assert out.gates.mean().item() == pytest.approx(0.5)
    assert out.gates.sum(1).min() >= 1
    # without a keep ratio: the inference rule (here: every gate open, init bias 2)
    assert student.forward_train(tiny_inputs(student.backbone, batch=6)).gates.mean().item() == 1.0


def test_calibration_hits_the_keep_ratio_exactly_and_keeps_at_least_one_layer():
    torch.manual_seed(0)
    router = Router(16, 6, RouterConfig(router_dim=4))
    logits = torch.randn(50, 6)
    for keep in (0.2, 0.5, 0.8):
        reached = router.calibrate(logits, keep, min_layers=1)
        assert reached == pytest.approx(keep, abs=1 / 300)
        decisions = hard_decisions(torch.sigmoid(logits - router.logit_offset), 0.5, min_layers=1)
        assert decisions.float().mean().item() == pytest.approx(reached)
        assert decisions.sum(1).min() >= 1
    # a target below one layer per sample still runs one layer each
    assert router.calibrate(logits, 0.05, min_layers=1) == pytest.approx(1 / 6)
    # calibration at another gate threshold: the same decisions at that threshold
    reached = router.calibrate(logits, 0.5, min_layers=1, threshold=0.3)
    decisions = hard_decisions(torch.sigmoid(logits - router.logit_offset), 0.3, min_layers=1)
    assert decisions.float().mean().item() == pytest.approx(reached)


def test_no_sample_routes_to_an_empty_stack():
    student = tiny_student(gate_bias=[-6.0] * 4)
    out = student.forward_routed(tiny_inputs(student.backbone, batch=3))
    assert out.executed.sum(1).tolist() == [1, 1, 1]
    train = student.forward_train(tiny_inputs(student.backbone, batch=3))
    assert train.gates.sum(1).tolist() == [1.0, 1.0, 1.0]


def test_stage2_controller_reaches_its_target_on_a_small_problem(tmp_path):
    """Starting with every gate open (init bias 2), the tracked threshold brings the executed
    fraction onto the keep ratio during training; calibration then makes it exact."""
    teacher = tiny_teacher()
    data = _data(teacher)
    teacher.normalizer.fit(data.targets)
    graph = GraphConfig(graph_dim=16, semantic_dim=16, top_k=4)
    probes = LayerProbes(teacher.num_layers, teacher.hidden_size, teacher.chunk_size, graph)
    records = record_teacher(teacher, probes, data)
    cfg = DistillConfig(graph=graph, router=RouterConfig(router_dim=8),
                        loss=LossConfig(keep_ratio=0.5, budget_warmup=0.3),
                        student=OptimConfig(epochs=12, batch_size=8, lr=1e-3), device="cpu")
    student = RoutedStudent.from_teacher(teacher, cfg.router)
    result = distill_student(student, probes, records, data, cfg, tmp_path)
    history = result.history
    assert history[0]["executed"] > 0.9  # the student starts as the teacher
    for h in history:  # every batch spends the scheduled target (to the rounding of B x L decisions)
        assert h["executed"] == pytest.approx(h["keep_target"], abs=1 / 32 + 1e-6)
    assert history[-1]["keep_target"] == 0.5
    fraction = calibrate_router(result.model, data, 0.5)
    assert fraction == pytest.approx(0.5, abs=1 / (4 * len(data)))


def test_train_depths_cycle_after_the_warmup_and_inference_keeps_min_layers(tmp_path):
    """router.train_depths: after the warm-up every batch runs each input's own top k, k cycling
    through the depths (by step); the exported student still runs min_layers per input."""
    teacher = tiny_teacher()
    data = _data(teacher)
    teacher.normalizer.fit(data.targets)
    graph = GraphConfig(graph_dim=16, semantic_dim=16, top_k=4)
    probes = LayerProbes(teacher.num_layers, teacher.hidden_size, teacher.chunk_size, graph)
    router = RouterConfig(router_dim=8, min_layers=2, train_depths=[1, 3])
    cfg = DistillConfig(graph=graph, router=router, loss=LossConfig(keep_ratio=0.5, budget_warmup=0.3),
                        student=OptimConfig(epochs=6, batch_size=8, lr=1e-3), device="cpu")
    student = RoutedStudent.from_teacher(teacher, cfg.router)
    history = distill_student(student, probes, record_teacher(teacher, probes, data), data, cfg, tmp_path).history
    warm = [h for h in history if h["keep_target"] > 0.75]
    after = history[len(history) // 2:]
    assert warm and all(h["depth"] == 2 for h in warm)  # the warm-up as without train_depths
    assert {h["depth"] for h in after} == {1, 3}
    for h in after:  # every input ran exactly its top `depth` layers of 4
        assert h["executed"] == pytest.approx(h["depth"] / TINY.num_layers, abs=1e-6)
        assert h["keep_target"] == pytest.approx(h["depth"] / TINY.num_layers)
    assert student.min_layers == 2
    calibrate_router(student, data, 0.5)
    out = student.forward_routed(tiny_inputs(student.backbone, 3))
    assert out.executed.sum(1).tolist() == [2, 2, 2]


def test_train_depths_need_top_k_routing_and_fit_the_backbone():
    with pytest.raises(ConfigError, match="train_depths: needs the learned router with top-k routing"):
        RouterConfig(min_layers=0, train_depths=[1, 2]).validate()
    with pytest.raises(ConfigError, match="train_depths: every depth must be >= 1"):
        RouterConfig(min_layers=2, train_depths=[0, 2]).validate()
    with pytest.raises(ConfigError, match=r"train_depths \[2, 9\]: more than the backbone's 4 layers"):
        RouterConfig(min_layers=2, train_depths=[2, 9]).check_layers(4)


def test_without_the_controller_the_threshold_stays_put(tmp_path):
    teacher = tiny_teacher()
    data = _data(teacher)
    teacher.normalizer.fit(data.targets)
    graph = GraphConfig(graph_dim=16, semantic_dim=16, top_k=4)
    probes = LayerProbes(teacher.num_layers, teacher.hidden_size, teacher.chunk_size, graph)
    cfg = DistillConfig(graph=graph, router=RouterConfig(router_dim=8),
                        loss=LossConfig(keep_ratio=0.5, budget_control=False),
                        student=OptimConfig(epochs=2, batch_size=8), device="cpu")
    student = RoutedStudent.from_teacher(teacher, cfg.router)
    distill_student(student, probes, record_teacher(teacher, probes, data), data, cfg, tmp_path)
    assert student.router.logit_offset.item() == 0.0


def _stats(rows):
    return route_statistics(torch.tensor(rows, dtype=torch.bool))


def test_route_statistics_count_routes_and_layers():
    stats = _stats([[1, 0, 1, 0], [1, 0, 1, 0], [0, 1, 1, 1]])
    assert stats["executed_layer_fraction"] == pytest.approx(7 / 12)
    assert stats["distinct_routes"] == 2
    assert stats["top_routes"][0] == {"layers": [0, 2], "share": pytest.approx(2 / 3)}
    assert stats["layers_per_sample"] == {"min": 2, "max": 3, "mean": pytest.approx(7 / 3)}


def test_collapse_warnings_fire_for_every_collapse_and_not_for_a_healthy_router():
    healthy = _stats([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]])
    assert routing_warnings(healthy, 0.5, 4) == []
    everything = routing_warnings(_stats([[1, 1, 1, 1]] * 3), 0.5, 4)
    assert any("every decoder layer" in w for w in everything)
    assert any("off the keep_ratio target" in w for w in everything)
    nothing = routing_warnings({**_stats([[1, 0, 0, 0]] * 2), "executed_layer_fraction": 0.0}, 0.5, 4)
    assert any("no decoder layer" in w for w in nothing)
    static = routing_warnings(_stats([[1, 0, 1, 0]] * 3), 0.5, 4)
    assert len(static) == 1 and "one input-independent route (layers [0, 2])" in static[0]
    # a fixed-route baseline is static by design: no warning for that
    assert routing_warnings(_stats([[1, 0, 1, 0]] * 3), 0.5, 4, router_kind="fixed") == []
    off = routing_warnings(_stats([[1, 1, 1, 0], [1, 1, 0, 1]]), 0.5, 4)
    assert len(off) == 1 and "0.750" in off[0]
