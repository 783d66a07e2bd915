"""Losses against values computed by hand on tiny tensors."""

import math

import pytest
import torch

from actdistill_ros.core.config import LossConfig
from actdistill_ros.core.training.losses import (
    action_terms,
    balance_loss,
    budget_loss,
    distillation_loss,
    layer_weights,
    pairwise_cosine,
    semantic_terms,
)


def test_layer_weights_follow_l_over_L_minus_1_to_the_gamma_normalised_to_mean_one():
    w = layer_weights(3, gamma=2.0)
    # raw (0/2)^2, (1/2)^2, (2/2)^2 = 0, 0.25, 1; mean 5/12
    assert torch.allclose(w, torch.tensor([0.0, 0.6, 2.4]))
    assert math.isclose(w.mean().item(), 1.0, rel_tol=1e-6)
    assert torch.equal(layer_weights(1, 2.0), torch.ones(1))


def test_pairwise_cosine_matrix():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    c = pairwise_cosine(x)
    s = 1 / math.sqrt(2)
    assert torch.allclose(c, torch.tensor([[1, 0, s], [0, 1, s], [s, s, 1]]), atol=1e-6)


def test_semantic_and_relational_terms():
    teacher = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # B=2, L=1, d=2
    student = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    semantic, relational = semantic_terms(student, teacher, eta=0.5)
    # cos: sample 0 -> 1, sample 1 -> 0: mean(1 - cos) = 0.5
    assert torch.allclose(semantic, torch.tensor([0.5]))
    # C^S = [[1,1],[1,1]], C^T = [[1,0],[0,1]]: MSE = 2/4 = 0.5, times eta 0.5
    assert torch.allclose(relational, torch.tensor([0.25]))


def test_action_terms_ground_truth_teacher_and_previous_layer():
    student = torch.tensor([[[[1.0]], [[3.0]]]])  # B=1, L=2, H=1, A=1
    teacher = torch.tensor([[[[0.0]], [[1.0]]]])
    target = torch.tensor([[[2.0]]])
    to_gt, to_teacher, to_prev = action_terms(student, teacher, target)
    assert torch.allclose(to_gt, torch.tensor([1.0, 1.0]))
    assert torch.allclose(to_teacher, torch.tensor([1.0, 4.0]))
    # layer 0 against a_{-1} = 0; layer 1 against layer 0's 1.0
    assert torch.allclose(to_prev, torch.tensor([1.0, 4.0]))


def test_previous_layer_target_is_stop_gradient():
    student = torch.tensor([[[[1.0]], [[3.0]]]], requires_grad=True)
    _, _, to_prev = action_terms(student, torch.zeros_like(student), torch.zeros(1, 1, 1))
    to_prev[1].backward()
    # d/d a1 (a1 - sg(a0))^2 = 2*(3-1) = 4; nothing flows into a0
    assert torch.allclose(student.grad.flatten(), torch.tensor([0.0, 4.0]))


def test_balance_is_variance_over_layers_of_batch_mean_gate_and_budget_targets_keep_ratio():
    probs = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # batch means 0.5, 0.0
    assert math.isclose(balance_loss(probs).item(), 0.0625)
    assert math.isclose(budget_loss(probs, 0.5).item(), (0.25 - 0.5) ** 2)


def test_total_combines_terms_with_configured_weights():
    torch.manual_seed(0)
    b, l, d, h = 3, 4, 5, 2
    cfg = LossConfig(alpha=0.7, beta=1.3, eta=0.5, gamma=2.0, balance=0.3, budget=2.0, keep_ratio=0.5)
    s_s, s_t = torch.randn(b, l, d), torch.randn(b, l, d)
    a_s, a_t, gt = torch.randn(b, l, h, 7), torch.randn(b, l, h, 7), torch.randn(b, h, 7)
    probs = torch.rand(b, l)
    gates = (probs > 0.5).float()
    task = torch.tensor(0.4)
    total, terms = distillation_loss(cfg, task, s_s, s_t, a_s, a_t, gt, probs, gates)
    w = layer_weights(l, 2.0)
    sem, rel = semantic_terms(s_s, s_t, 0.5)
    g, t, p = action_terms(a_s, a_t, gt)
    expected = (0.4 + 0.7 * ((w * sem).sum() + (w * rel).sum()) + 1.3 * (w * (g + t + p)).sum()
                + 0.3 * probs.mean(0).var(unbiased=False) + 2.0 * (gates.mean() - 0.5) ** 2)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(terms) >= {"task", "semantic", "relational", "action_gt", "action_teacher", "action_prev",
                          "balance", "budget", "total"}
