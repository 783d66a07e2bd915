"""Route-specialised execution: compiled route programs give eager's outputs, for mixed routes too."""

import pytest
import torch

from actdistill_ros.core.model.route_exec import Execution, RouteExecutor, group_routes
from actdistill_ros.core.model.router import hard_decisions, top_layers_mask

from core_helpers import tiny_inputs, tiny_student


def _mixed_route_student():
    """A student whose input-dependent gates give the samples of a 6-batch different routes."""
    student = tiny_student(seed=3)
    inputs = tiny_inputs(student.backbone, batch=6, seed=1)
    with torch.no_grad():
        student.router.gate_head.weight.normal_(0, 3.0)
        student.router.gate_head.bias.zero_()
        batch = student.backbone.embed(inputs)
        logits = torch.logit(student.gate_probs(batch).double().clamp(1e-9, 1 - 1e-9))
        student.router.gate_head.bias.copy_(-logits.median(0).values.float() + 1e-3)
    return student, inputs


def test_group_routes_keeps_every_row_once():
    keep = torch.tensor([[1, 0, 1], [1, 1, 1], [1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    groups = {g.route: g.rows for g in group_routes(keep)}
    assert groups == {(0, 2): [0, 2], (0, 1, 2): [1], (): [3]}


def test_compiled_routes_equal_eager_for_mixed_per_sample_routes():
    student, inputs = _mixed_route_student()
    eager = student.forward_routed(inputs)
    routes = {tuple(r) for r in eager.executed.tolist()}
    assert len(routes) > 2, "test needs several distinct routes in one batch"
    # aot_eager: dynamo captures each route program as torch.compile does (guards, graph breaks),
    # without a C++ build per route (inductor: ~40 s per route on a 2-core CPU)
    student.set_execution("compile", compile_backend="aot_eager")
    compiled = student.forward_routed(inputs)
    assert torch.equal(compiled.executed, eager.executed)
    assert torch.allclose(compiled.actions, eager.actions, atol=1e-6, rtol=0)
    assert student.executor.compiles == len(routes)  # one program per route signature
    again = student.forward_routed(inputs)  # cached: nothing compiled again
    assert student.executor.compiles == len(routes)
    assert torch.allclose(again.actions, eager.actions, atol=1e-6, rtol=0)
    # and each sample alone gets the action it got in the mixed batch
    for i in range(6):
        single = student.forward_routed({k: v[i:i + 1] for k, v in inputs.items()})
        assert torch.allclose(single.actions[0], eager.actions[i], atol=1e-5)


@pytest.mark.slow
def test_inductor_route_program_matches_eager():
    """The real compiler (C++ code generation) on one route: the same actions within float rounding."""
    student = tiny_student(gate_bias=[4.0, -4.0, 4.0, -4.0])
    inputs = tiny_inputs(student.backbone, batch=1)
    eager = student.forward_routed(inputs).actions
    student.set_execution(Execution.COMPILE)
    assert torch.allclose(student.forward_routed(inputs).actions, eager, atol=1e-5, rtol=0)


def test_route_cache_is_bounded_lru():
    student, inputs = _mixed_route_student()
    routes = len({tuple(r) for r in student.forward_routed(inputs).executed.tolist()})
    executor = RouteExecutor(student.backbone, "compile", cache_size=2, compile_backend="aot_eager")
    student.executor = executor
    student.forward_routed(inputs)
    assert len(executor._programs) == 2
    assert executor.evictions == routes - 2


def test_execution_option_is_checked():
    with pytest.raises(ValueError, match="unknown execution 'fast'"):
        Execution.parse("fast")
    student = tiny_student(gate_bias=[4.0, -4.0, 4.0, -4.0])
    student.set_execution("cuda_graphs")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        student.forward_routed(tiny_inputs(student.backbone, batch=1))


def test_lazy_decisions_equal_the_full_rule():
    """The CPU shortcut in hard_decisions (skip top-k corrections no row needs) changes nothing."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        probs = torch.rand(5, 6, generator=gen).round(decimals=1)  # ties included
        for min_layers in (0, 1, 3):
            for max_layers in (None, 2, 4, 6):
                full = probs >= 0.5
                if min_layers:
                    full = full | top_layers_mask(probs, min_layers)
                if max_layers is not None and max_layers < 6:
                    full = full & top_layers_mask(probs, max_layers)
                assert torch.equal(hard_decisions(probs, 0.5, max_layers, min_layers), full)


def test_one_sample_router_equals_the_batched_form():
    """The single-sample CPU path (each span through its own projection, no masks) computes the
    batched router's function: rows of different text lengths, and a row with no text at all."""
    student, inputs = _mixed_route_student()
    router = student.router
    with torch.no_grad():
        batch = student.backbone.embed(inputs)
        text_mask = batch.text_mask.clone()
        text_mask[2] = False  # an empty span pools to 0 in both forms
        batched = router.logits(batch.hidden, batch.vision_mask, text_mask)
        for row in range(batch.hidden.shape[0]):
            one = router.logits(batch.hidden[row:row + 1], batch.vision_mask[row:row + 1], text_mask[row:row + 1])
            torch.testing.assert_close(one, batched[row:row + 1], rtol=1e-5, atol=1e-5)


def _row(inputs: dict[str, torch.Tensor], row: int) -> dict[str, torch.Tensor]:
    return {k: v[row:row + 1] for k, v in inputs.items()}


def _batched_probs(student, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The whole router function in its batched form (several rows: no one-sample path)."""
    rows = {k: torch.cat([v, v]) for k, v in inputs.items()}
    return student.gate_probs(student.backbone.embed(rows))[:1]


def _spread_gate_student():
    """Input-dependent gates spread over (0, 1): neither saturated (every change of the weights
    moves them) nor tied at the threshold (float rounding cannot flip a decision)."""
    student = tiny_student(seed=3)
    with torch.no_grad():
        student.router.gate_head.weight.normal_(0, 1.0)
        student.router.gate_head.bias.zero_()
    return student, tiny_inputs(student.backbone, batch=6, seed=1)


def test_one_sample_inference_gates_equal_the_batched_form_and_follow_every_change():
    """The robot's path (one sample on a CPU, the instruction's half of the router memoised) gives
    the batched router's gates: for new instructions, after an optimiser step on the router, a
    moved threshold offset, a checkpoint load and a dtype change, never a stale value."""
    student, inputs = _spread_gate_student()
    router = student.router

    def check(sample: dict[str, torch.Tensor], atol: float = 1e-6) -> torch.Tensor:
        with torch.no_grad():
            fast = student.inference_probs(student.backbone.embed(sample))
            torch.testing.assert_close(fast, _batched_probs(student, sample), rtol=1e-5, atol=atol)
        return fast

    first = check(_row(inputs, 0))
    assert router._instruction_memo is not None, "the one-sample path should memoise the instruction's part"
    again = check(_row(inputs, 0))  # the memo hit: the same value
    assert torch.equal(again, first)
    for row in (1, 2, 3):  # other images and other instructions ("go to the blue block", ...)
        check(_row(inputs, row))
    optimiser = torch.optim.SGD(router.parameters(), lr=0.01)
    for step in range(2):  # in-place optimiser steps on the router's weights
        student.zero_grad()
        with torch.enable_grad():
            loss = student._gates(student.backbone.embed(inputs))[1].sum()
        loss.backward()
        optimiser.step()
        assert not torch.equal(check(_row(inputs, 0)), first), step
    router.track_offset(2.0, momentum=1.0)  # the inference threshold moves
    shifted = check(_row(inputs, 0))
    state = {k: v.clone() for k, v in student.state_dict().items()}
    with torch.no_grad():
        router.gate_head.bias.add_(5.0)
    assert not torch.equal(check(_row(inputs, 0)), shifted)
    student.load_state_dict(state)
    assert torch.equal(check(_row(inputs, 0)), shifted)
    student.double()
    check(_row(inputs, 0), atol=1e-12)


def test_one_sample_router_follows_every_token_layout():
    """The one-sample path (the instruction's part memoised) follows the token layout of every frame:
    a longer instruction, image tokens inside the text as in LLaVA's prompt, no instruction tokens,
    and the first layout again each give the batched form's gates."""
    student, inputs = _spread_gate_student()
    router = student.router
    with torch.no_grad():
        hidden = student.backbone.embed(_row(inputs, 0)).hidden
    length = hidden.shape[1]

    def masks(vision: list[int], text: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        v, t = torch.zeros(1, length, dtype=torch.bool), torch.zeros(1, length, dtype=torch.bool)
        v[0, vision], t[0, text] = True, True
        return v, t

    image = list(range(4, 4 + 16))
    layouts = [masks(list(range(16)), list(range(16, 24))),  # TinyVLA's: image, then the instruction
               masks(list(range(16)), list(range(16, 30))),  # a longer instruction
               masks(image, [0, 1, 2, 3, 20, 21, 22]),  # the image inside the prompt's text
               masks(image, []),  # no instruction tokens
               masks(list(range(16)), list(range(16, 24)))]  # the first layout again
    for vision, text in layouts:
        with torch.no_grad():
            fast = router(hidden, vision, text)
            batched = router(hidden.expand(2, -1, -1), vision.expand(2, -1), text.expand(2, -1))[:1]
        torch.testing.assert_close(fast, batched, rtol=1e-5, atol=1e-6)


def test_one_sample_non_finite_gates_are_an_error_not_a_route():
    student = tiny_student()
    inputs = tiny_inputs(student.backbone, batch=1)
    with torch.no_grad():
        student.router.gate_head.bias[1] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite gates"):
        student.forward_routed(inputs)


def test_one_sample_route_runs_what_the_batched_rule_decides():
    """forward_routed for one sample on a CPU (host-side decisions, the route run directly) gives
    the batched pass's routes and actions, row by row."""
    student, inputs = _spread_gate_student()
    student.set_budget(max_layers=3, threshold=0.1)
    batched = student.forward_routed(inputs)
    assert len({tuple(r) for r in batched.executed.tolist()}) > 1, "test needs differing routes"
    for row in range(6):
        single = student.forward_routed(_row(inputs, row))
        assert torch.equal(single.executed, batched.executed[row:row + 1])
        torch.testing.assert_close(single.actions, batched.actions[row:row + 1], rtol=1e-4, atol=1e-5)


def test_one_sample_decisions_equal_the_batched_rule():
    """Deciding one sample on the host gives the tensor rule's decisions, equal scores included
    (both give a tie to the lower layer)."""
    gen = torch.Generator().manual_seed(1)
    probs = torch.rand(300, 6, generator=gen).round(decimals=1)  # many ties
    for min_layers in (0, 1, 3):
        for max_layers in (None, 1, 2, 4, 6):
            batched = hard_decisions(probs, 0.5, max_layers, min_layers)
            single = torch.cat([hard_decisions(probs[i:i + 1], 0.5, max_layers, min_layers) for i in range(300)])
            assert torch.equal(single, batched), (min_layers, max_layers)
    assert top_layers_mask(torch.tensor([[0.7, 0.9, 0.7, 0.7]]), 2).tolist() == [[True, True, False, False]]
