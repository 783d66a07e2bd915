"""Graph-structured encapsulation of one layer's token states (training only).

Per layer l: tokens are nodes; a learned affinity exp(phi(h_i) . psi(h_j)) keeps the top-k
neighbours of each node (self loops and padding excluded) with weights normalised to 1;
two graph-attention layers whose attention is multiplied by that edge prior; attention
pooling; an MLP -> semantic vector s_l. A small per-layer action head maps s_l -> a_l.
All batched: no Python loop over samples. Token order does not matter (set function).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import GraphConfig


def knn_edge_prior(query: torch.Tensor, key: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Sparse affinity graph as a dense [B, T, T] matrix of normalised edge weights.

    ``a_ij = exp(q_i . k_j / sqrt(d))`` restricted to the top-k valid j != i per node i and
    normalised to sum 1 (a softmax over the kept logits). Invalid nodes get no edges.
    """
    b, t, d = query.shape
    logits = torch.einsum("bid,bjd->bij", query, key) / math.sqrt(d)
    eye = torch.eye(t, dtype=torch.bool, device=query.device)
    allowed = valid[:, None, :] & valid[:, :, None] & ~eye
    logits = logits.masked_fill(~allowed, float("-inf"))
    k = min(k, t - 1)
    top_values, top_index = logits.topk(k, dim=-1)
    weights = torch.softmax(top_values, dim=-1)
    # rows with fewer than k valid neighbours: -inf entries softmax to 0; all-invalid rows -> nan -> 0
    weights = torch.nan_to_num(weights, nan=0.0)
    prior = torch.zeros_like(logits).scatter(-1, top_index, weights)
    return prior


class PriorGATLayer(nn.Module):
    """Graph attention restricted to the prior's edges, attention multiplied by the prior."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)
        self.att_src = nn.Linear(dim, 1, bias=False)
        self.att_dst = nn.Linear(dim, 1, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        scores = nn.functional.leaky_relu(self.att_dst(h) + self.att_src(h).transpose(1, 2), 0.2)  # [B,T,T]
        scores = scores.masked_fill(prior <= 0, float("-inf"))
        attention = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0) * prior
        attention = attention / attention.sum(-1, keepdim=True).clamp_min(1e-9)
        return self.norm(x + nn.functional.elu(attention @ h))


class GraphEncapsulation(nn.Module):
    """Token states [B, T, D] of one layer -> semantic vector [B, d_s]."""

    def __init__(self, hidden_size: int, cfg: GraphConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g = cfg.graph_dim
        self.input = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, g))
        self.phi = nn.Linear(g, g, bias=False)
        self.psi = nn.Linear(g, g, bias=False)
        self.gat = nn.ModuleList(PriorGATLayer(g) for _ in range(cfg.gat_layers))
        self.pool_score = nn.Sequential(nn.Linear(g, g), nn.Tanh(), nn.Linear(g, 1))
        self.out = nn.Sequential(nn.Linear(g, g), nn.GELU(), nn.Linear(g, cfg.semantic_dim))

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self.input(hidden)
        prior = knn_edge_prior(self.phi(x), self.psi(x), valid, self.cfg.top_k)
        for layer in self.gat:
            x = layer(x, prior)
        scores = self.pool_score(x).squeeze(-1).masked_fill(~valid, float("-inf"))
        pooled = torch.einsum("bt,btg->bg", scores.softmax(-1), x)
        return self.out(pooled)


class LayerActionHead(nn.Module):
    """s_l [B, d_s] -> a_l [B, chunk, 7] (normalised action units)."""

    def __init__(self, semantic_dim: int, chunk_size: int, action_dim: int = 7) -> None:
        super().__init__()
        self.chunk_size, self.action_dim = chunk_size, action_dim
        self.mlp = nn.Sequential(nn.Linear(semantic_dim, semantic_dim), nn.GELU(),
                                 nn.Linear(semantic_dim, chunk_size * action_dim))

    def forward(self, semantic: torch.Tensor) -> torch.Tensor:
        return self.mlp(semantic).view(-1, self.chunk_size, self.action_dim)


class LayerProbes(nn.Module):
    """One graph module + action head per decoder layer (the stage-1 'probes')."""

    def __init__(self, num_layers: int, hidden_size: int, chunk_size: int, cfg: GraphConfig) -> None:
        super().__init__()
        self.graphs = nn.ModuleList(GraphEncapsulation(hidden_size, cfg) for _ in range(num_layers))
        self.heads = nn.ModuleList(LayerActionHead(cfg.semantic_dim, chunk_size) for _ in range(num_layers))

    def forward(self, per_layer_hidden: list[torch.Tensor], valid: torch.Tensor):
        """-> (semantics [B, L, d_s], actions [B, L, chunk, 7])."""
        semantics = [g(h, valid) for g, h in zip(self.graphs, per_layer_hidden, strict=True)]
        actions = [head(s) for head, s in zip(self.heads, semantics, strict=True)]
        return torch.stack(semantics, 1), torch.stack(actions, 1)
