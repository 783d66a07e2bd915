"""Routed student: skipped layers are never called, train == inference, budget controls."""

import pytest
import torch

from actdistill_ros.core.model.flops import component_flops, count_flops, layer_share
from actdistill_ros.core.model.router import hard_decisions, straight_through_gates

from core_helpers import tiny_inputs, tiny_student

OPEN, SHUT = 4.0, -4.0


def _count_calls(student):
    calls = [0] * student.num_layers
    for i, layer in enumerate(student.backbone.layers):
        layer.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def test_skipped_layers_are_not_called_and_cost_no_flops():
    student = tiny_student(gate_bias=[OPEN, SHUT, OPEN, SHUT])
    inputs = tiny_inputs(student.backbone, batch=1)
    calls = _count_calls(student)
    out = student.forward_routed(inputs)
    assert calls == [1, 0, 1, 0]
    assert out.executed.tolist() == [[True, False, True, False]]
    full = count_flops(lambda: student.backbone(inputs))
    routed = count_flops(lambda: student.forward_routed(inputs))
    batch = student.backbone.embed(inputs)
    layer = count_flops(lambda: student.backbone.run_layer(0, batch.hidden, batch))
    assert layer > 0
    # two layers fewer; the router adds a little
    assert full - 2 * layer < routed < full - 1.5 * layer


def test_layer_share_is_one_layers_part_of_a_full_routed_pass():
    """What the latency deadline's model takes from the FLOP split: the passes at 4 and at 2 layers
    differ by 2 shares of the 4-layer pass, the rest (embed, router, head) is fixed."""
    student = tiny_student(gate_bias=[OPEN] * 4)
    inputs = tiny_inputs(student.backbone, batch=1)
    full = count_flops(lambda: student.forward_routed(inputs))
    half = count_flops(lambda: tiny_student(gate_bias=[OPEN, SHUT, OPEN, SHUT]).forward_routed(inputs))
    share = layer_share(component_flops(student.backbone, inputs, student))
    assert 0 < 4 * share < 1  # fixed costs exist
    assert (full - half) / full == pytest.approx(2 * share, rel=0.05)


def test_all_gates_open_reproduces_the_teacher_exactly():
    student = tiny_student(gate_bias=[OPEN] * 4)
    inputs = tiny_inputs(student.backbone, batch=3)
    with torch.no_grad():
        teacher_out = student.backbone(inputs)
    assert torch.equal(student.forward_routed(inputs).actions, teacher_out)


def test_training_forward_equals_inference_forward():
    """The straight-through gated residual computes what inference computes (no train/test gap)."""
    student = tiny_student(gate_bias=[OPEN, SHUT, SHUT, OPEN])
    inputs = tiny_inputs(student.backbone, batch=2)
    with torch.no_grad():
        train_out = student.forward_train(inputs)
    routed = student.forward_routed(inputs)
    assert torch.allclose(train_out.actions, routed.actions, atol=1e-6)
    assert torch.allclose(train_out.gates, routed.executed.float())


def test_router_gets_gradient_through_straight_through_gate():
    student = tiny_student(gate_bias=[OPEN, SHUT, OPEN, SHUT]).train()
    out = student.forward_train(tiny_inputs(student.backbone))
    out.actions.pow(2).mean().backward()
    grad = student.router.gate_head.bias.grad
    assert grad is not None and torch.all(grad != 0), "every gate, open or shut, must get a gradient"


def test_per_sample_routing_in_a_batch_matches_single_sample_runs():
    student = tiny_student(seed=3)
    inputs = tiny_inputs(student.backbone, batch=6, seed=1)
    with torch.no_grad():  # input-dependent gates centred on this batch: routes differ per sample
        student.router.gate_head.weight.normal_(0, 3.0)
        student.router.gate_head.bias.zero_()
        batch = student.backbone.embed(inputs)
        logits = torch.logit(student.gate_probs(batch).double().clamp(1e-9, 1 - 1e-9))
        student.router.gate_head.bias.copy_(-logits.median(0).values.float() + 1e-3)
    batched = student.forward_routed(inputs)
    assert len({tuple(r) for r in batched.executed.tolist()}) > 1, "test needs differing routes"
    for i in range(6):
        single = student.forward_routed({k: v[i:i + 1] for k, v in inputs.items()})
        assert torch.equal(single.executed[0], batched.executed[i])
        assert torch.allclose(single.actions[0], batched.actions[i], atol=1e-5)


def test_max_layers_caps_to_top_gates_and_threshold_is_runtime_settable():
    student = tiny_student(gate_bias=[3.0, 1.0, 2.0, 0.5])  # probs all >= 0.5
    inputs = tiny_inputs(student.backbone, batch=1)
    assert student.forward_routed(inputs).executed.sum().item() == 4
    student.set_budget(max_layers=2)
    assert student.forward_routed(inputs).executed.tolist() == [[True, False, True, False]]
    student.set_budget(max_layers=None, threshold=0.8)  # sigmoid(1.0)=0.73, sigmoid(0.5)=0.62 fail
    assert student.forward_routed(inputs).executed.tolist() == [[True, False, True, False]]
    for bad in ({"max_layers": 0}, {"max_layers": 5}, {"threshold": 1.0}, {"threshold": -0.1}):
        with pytest.raises(ValueError):
            student.set_budget(**bad)


def test_gate_helpers():
    probs = torch.tensor([[0.9, 0.4, 0.6]], requires_grad=True)
    assert hard_decisions(probs, 0.5).tolist() == [[True, False, True]]
    assert hard_decisions(probs, 0.5, max_layers=1).tolist() == [[True, False, False]]
    g = straight_through_gates(probs, 0.5)
    assert g.tolist() == [[1.0, 0.0, 1.0]]
    g.sum().backward()
    assert torch.equal(probs.grad, torch.ones_like(probs))


def test_non_finite_router_output_is_an_error_not_a_silent_route():
    student = tiny_student()
    with torch.no_grad():
        student.router.gate_head.bias[1] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite gates"):
        student.forward_routed(tiny_inputs(student.backbone))
