"""Graph encapsulation: sparse kNN prior invariants, permutation invariance, batching."""

import torch

from actdistill_ros.core.config import GraphConfig
from actdistill_ros.core.model.graph import GraphEncapsulation, LayerProbes, knn_edge_prior


def test_knn_prior_keeps_k_normalised_neighbours_without_self_loops_or_padding():
    torch.manual_seed(0)
    b, t, d, k = 2, 12, 8, 4
    q, key = torch.randn(b, t, d), torch.randn(b, t, d)
    valid = torch.ones(b, t, dtype=torch.bool)
    valid[1, 9:] = False  # padding in sample 1
    prior = knn_edge_prior(q, key, valid, k)
    assert torch.all(torch.diagonal(prior, dim1=1, dim2=2) == 0)
    assert torch.all((prior[0] > 0).sum(-1) == k)
    assert torch.all(prior[1, :, 9:] == 0), "no edges into padding"
    assert torch.all(prior[1, 9:] == 0), "padding nodes have no edges"
    sums = prior.sum(-1)
    assert torch.allclose(sums[0], torch.ones(t))
    assert torch.allclose(sums[1, :9], torch.ones(9))
    # the kept neighbours are the top-k affinities
    logits = (q[0] @ key[0].T).fill_diagonal_(float("-inf"))
    assert torch.equal((prior[0] > 0), torch.zeros_like(prior[0], dtype=torch.bool).scatter(
        1, logits.topk(k, dim=1).indices, True))


def test_graph_module_is_invariant_to_token_permutation():
    torch.manual_seed(1)
    module = GraphEncapsulation(16, GraphConfig(graph_dim=16, semantic_dim=8, top_k=4)).eval()
    hidden = torch.randn(2, 10, 16)
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[1, 7:] = False
    perm = torch.randperm(10)
    with torch.no_grad():
        a = module(hidden, valid)
        b = module(hidden[:, perm], valid[:, perm])
    assert a.shape == (2, 8)
    assert torch.allclose(a, b, atol=1e-5)


def test_graph_module_batched_equals_per_sample():
    torch.manual_seed(2)
    module = GraphEncapsulation(16, GraphConfig(graph_dim=16, semantic_dim=8, top_k=3)).eval()
    hidden = torch.randn(3, 9, 16)
    valid = torch.ones(3, 9, dtype=torch.bool)
    with torch.no_grad():
        batched = module(hidden, valid)
        single = torch.cat([module(hidden[i:i + 1], valid[i:i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_probes_give_one_semantic_vector_and_action_chunk_per_layer():
    probes = LayerProbes(num_layers=3, hidden_size=16, chunk_size=2, cfg=GraphConfig(graph_dim=8, semantic_dim=6))
    hidden = [torch.randn(4, 5, 16) for _ in range(3)]
    sem, act = probes(hidden, torch.ones(4, 5, dtype=torch.bool))
    assert sem.shape == (4, 3, 6) and act.shape == (4, 3, 2, 7)
