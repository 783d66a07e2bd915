"""Measured layer credit (router.credit: measured): the values it measures, what learns from them, and
the router it trains on a problem where only some layers matter."""

import numpy as np
import pytest
import torch

from actdistill_ros.core.config import (
    DistillConfig,
    DistributedConfig,
    GraphConfig,
    LossConfig,
    OptimConfig,
    RouterConfig,
)
from actdistill_ros.core.data.dataset import Episode, EpisodeDataset
from actdistill_ros.core.model.graph import LayerProbes
from actdistill_ros.core.model.route_exec import RouteExecutor
from actdistill_ros.core.model.student import RoutedStudent
from actdistill_ros.core.training.layer_credit import (
    credit_loss,
    measure_layer_values,
    sample_credit_layers,
    toggled_routes,
)
from actdistill_ros.core.training.stages import (
    TensorData,
    build_tensor_data,
    calibrate_router,
    distill_student,
    predict,
    record_teacher,
)
from actdistill_ros.core.typed_config import ConfigError

from core_helpers import TINY, tiny_inputs, tiny_teacher


def test_toggled_routes_flip_one_layer_each_and_end_with_the_route():
    route = torch.tensor([[True, False, True], [False, False, True]])
    variants = toggled_routes(route)
    assert variants.shape == (4, 2, 3)
    assert torch.equal(variants[3], route)
    for layer in range(3):
        changed = variants[layer] != route
        assert changed[:, layer].all() and changed.sum() == 2


def test_toggled_routes_flip_only_the_sampled_layers_of_each_route():
    route = torch.tensor([[True, False, True, False], [False, False, True, True]])
    layers = torch.tensor([[1, 3], [0, 2]])
    variants = toggled_routes(route, layers)
    assert variants.shape == (3, 2, 4)
    assert torch.equal(variants[2], route)
    for row in range(2):
        for j in range(2):
            changed = (variants[j, row] != route[row]).nonzero().flatten().tolist()
            assert changed == [layers[row, j].item()]


def test_sampled_credit_layers_are_distinct_and_cover_every_layer_over_the_steps():
    assert sample_credit_layers(3, 4, 0) is None and sample_credit_layers(3, 4, 4) is None
    generator = torch.Generator().manual_seed(0)
    seen = torch.zeros(5, 8, dtype=torch.bool)
    for _ in range(20):
        layers = sample_credit_layers(5, 8, 3, generator)
        assert layers.shape == (5, 3)
        assert all(len(set(row.tolist())) == 3 for row in layers)
        seen[torch.arange(5)[:, None], layers] = True
    assert seen.all()


def _three_routes():
    """A tiny teacher, three embedded inputs, a route for each (some layers, all, one) and targets."""
    teacher = tiny_teacher()
    batch = teacher.embed(tiny_inputs(teacher, batch=3))
    route = torch.tensor([[True, False, True, False], [True, True, True, True], [False, False, False, True]])
    return teacher, batch, route, torch.randn(3, TINY.chunk_size, 7)


def test_layer_values_of_a_layer_subset_match_the_full_measurement_and_leave_the_rest_unset():
    teacher, batch, route, target = _three_routes()
    full = measure_layer_values(teacher, batch, route, target)
    layers = torch.tensor([[0, 1], [3, 2], [2, 0]])
    part = measure_layer_values(teacher, batch, route, target, layers)
    measured = torch.zeros_like(route)
    measured[torch.arange(3)[:, None], layers] = True
    assert torch.allclose(part[measured], full[measured], rtol=1e-4, atol=1e-7)
    assert part[~measured].isnan().all()


def test_credit_loss_leaves_out_the_layers_not_measured():
    logits, values = torch.randn(4, 5), torch.randn(4, 5)
    unmeasured = torch.rand(4, 5) < 0.4
    partial = values.masked_fill(unmeasured, float("nan"))
    kept = ~unmeasured
    expected = credit_loss(logits[kept][None], values[kept][None])
    assert credit_loss(logits, partial).item() == pytest.approx(expected.item(), rel=1e-6)
    logits.requires_grad_(True)
    credit_loss(logits, partial).backward()
    assert torch.isfinite(logits.grad).all() and not logits.grad[unmeasured].any()


def test_layer_values_are_the_error_change_of_removing_or_adding_each_layer():
    """Against a brute-force pass per sample and route: value = error without the layer minus error
    with it, whether the layer was in the sample's route (removed) or not (added)."""
    teacher, batch, route, target = _three_routes()
    values = measure_layer_values(teacher, batch, route, target)
    executor = RouteExecutor(teacher)

    def error(sample: int, keep: torch.Tensor) -> float:
        sub = batch.select(torch.tensor([sample]))
        with torch.no_grad():
            actions = executor.run(sub, keep[None])
        return float(((actions[0] - target[sample]) ** 2).mean())

    for sample in range(3):
        for layer in range(TINY.num_layers):
            with_layer, without_layer = route[sample].clone(), route[sample].clone()
            with_layer[layer], without_layer[layer] = True, False
            expected = error(sample, without_layer) - error(sample, with_layer)
            assert values[sample, layer].item() == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_with_measured_credit_only_the_credit_loss_trains_the_router():
    """gate_gradient=False: the distillation terms (task, budget) reach no router weight and the
    credit loss reaches no backbone weight."""
    teacher = tiny_teacher()
    student = RoutedStudent.from_teacher(teacher, RouterConfig(router_dim=8, min_layers=1)).train()
    inputs = tiny_inputs(teacher, batch=4)
    target = torch.randn(4, TINY.chunk_size, 7)
    out = student.forward_train(inputs, decode_actions=False, target=target, keep_ratio=0.5, gate_gradient=False)
    (out.task_loss + (out.gates.mean() - 0.3) ** 2 + out.gate_probs.sum()).backward()
    assert all(p.grad is None or not p.grad.any() for p in student.router.parameters())
    assert any(p.grad is not None and p.grad.any() for p in student.backbone.parameters())
    student.zero_grad(set_to_none=True)
    values = measure_layer_values(student.backbone, out.batch, out.gates > 0.5, target)
    credit_loss(out.logits, values).backward()
    assert all(p.grad is not None for p in student.router.parameters())
    assert all(p.grad is None for p in student.backbone.parameters())


def test_credit_loss_is_blind_to_the_scale_of_the_errors():
    logits = torch.randn(5, 4)
    values = torch.randn(5, 4)
    assert credit_loss(logits, values).item() == pytest.approx(credit_loss(logits, 1e-3 * values + 7).item(), rel=1e-5)


@pytest.mark.parametrize("credit_layers", [0, 2])
def test_a_measured_credit_router_finds_the_only_layers_that_change_the_output(tmp_path, credit_layers):
    """Layers 0 and 2 of the teacher are made identities (zero output projections), and the targets
    are the teacher's own predictions: only layers 1 and 3 can matter. Trained by its measured
    credit (backbone frozen, each input its top 2), the router sends every input through {1, 3},
    also when each step measures only 2 of the 4 layers per sample."""
    teacher = tiny_teacher(seed=1)
    with torch.no_grad():
        for index in (0, 2):
            teacher.layers[index].self_attn.o_proj.weight.zero_()
            teacher.layers[index].mlp.down_proj.weight.zero_()
    rng = np.random.default_rng(0)
    episodes = [Episode(rng.integers(0, 255, (8, TINY.image_size, TINY.image_size, 3), dtype=np.uint8),
                        np.zeros((8, 7), np.float32), f"move to the {colour} cube")
                for colour in ("red", "green", "blue", "red", "green", "blue")]
    data = build_tensor_data(EpisodeDataset(episodes), teacher)
    teacher.normalizer.fit(torch.randn(64, TINY.chunk_size, 7))
    own = teacher.normalizer.denormalize(predict(teacher, data, routed=False)[0])
    data = TensorData(data.inputs, own, data.sample_ids)
    graph = GraphConfig(graph_dim=16, semantic_dim=16, top_k=4)
    probes = LayerProbes(teacher.num_layers, teacher.hidden_size, teacher.chunk_size, graph)
    cfg = DistillConfig(graph=graph, router=RouterConfig(router_dim=8, min_layers=2, credit="measured",
                                                         credit_samples=8, credit_layers=credit_layers),
                        loss=LossConfig(keep_ratio=0.5, budget_warmup=0.2), train_backbone=False, router_lr=1e-2,
                        student=OptimConfig(epochs=8, batch_size=8), device="cpu")
    student = RoutedStudent.from_teacher(teacher, cfg.router)
    result = distill_student(student, probes, record_teacher(teacher, probes, data), data, cfg, tmp_path)
    assert all("credit" in h for h in result.history)
    calibrate_router(student, data, 0.5)
    _, executed = predict(student, data, routed=True)
    assert executed[:, [1, 3]].all() and not executed[:, [0, 2]].any()


def test_measured_credit_needs_a_learned_router_the_budget_cut_and_no_fsdp():
    with pytest.raises(ConfigError, match="router.credit: unknown signal 'oracle'"):
        RouterConfig(credit="oracle").validate()
    with pytest.raises(ConfigError, match="router.credit: 'measured' trains a learned router"):
        RouterConfig(kind="fixed", fixed_layers=[0], credit="measured").validate()
    with pytest.raises(ConfigError, match="router.credit_layers: 2 .* router.credit is 'gradient'"):
        RouterConfig(credit_layers=2).validate()
    measured = RouterConfig(credit="measured")
    with pytest.raises(ConfigError, match="needs loss.budget_control: true"):
        DistillConfig(router=measured, loss=LossConfig(budget_control=False)).validate()
    with pytest.raises(ConfigError, match="FSDP"):
        DistillConfig(router=measured, distributed=DistributedConfig(strategy="fsdp")).validate()
