"""Graph encoders shared by every KG-based model (KGSF, KBRD).

`FeaturelessRGCN` computes exactly what PyG's ``RGCNConv(num_nodes, dim, num_relations,
num_bases=B)`` computes when called with ``x=None`` (KGSF Eq. 2 with per-relation mean
normalisation, basis decomposition, a root weight and a bias), with the same parameter names and
shapes, so weights are interchangeable. PyG materialises every relation's full weight matrix
(relations x entities x dim, about 1.2 GB on DBpedia) and runs one propagation per relation; here
only the rows that some edge actually reads are formed, one chunk of (relation, source) pairs at a
time, and the backward pass is written by hand so no large intermediate is kept.

With W_r = sum_b comp[r, b] * basis[b] (basis = `weight`, shape [B, N, D]):

    out[i] = sum_r mean_{j in N_r(i)} W_r[j] + root[i] + bias

Let p = (r, j) range over the distinct (relation, source) pairs of the graph and M[p] = W_r[j].
Then out = A @ M + root + bias, where A[i, p] = 1 / |N_r(i)| for every edge j -r-> i.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn


class _PairStructure:
    """Index structures of one graph, built once: distinct (relation, source) pairs and A, A^T."""

    def __init__(self, edge_index: torch.Tensor, edge_type: torch.Tensor, num_nodes: int,
                 num_relations: int, aggr: str) -> None:
        src, dst = edge_index[0].long(), edge_index[1].long()
        rel = edge_type.long()
        # Sorting pairs by source keeps the row gathers of the basis nearly sequential.
        pair_key = src * num_relations + rel
        keys, pair_of_edge = torch.unique(pair_key, return_inverse=True)
        self.pair_src = keys // num_relations
        self.pair_rel = keys % num_relations
        if aggr == "mean":
            dst_key = rel * num_nodes + dst
            _, inv, count = torch.unique(dst_key, return_inverse=True, return_counts=True)
            norm = 1.0 / count[inv].to(torch.float32)
        elif aggr in ("add", "sum"):
            norm = torch.ones(src.numel())
        else:
            raise ValueError(f"aggr must be 'mean' or 'add', got {aggr!r}")
        num_pairs = keys.numel()
        a = torch.sparse_coo_tensor(torch.stack([dst, pair_of_edge]), norm, (num_nodes, num_pairs),
                                    check_invariants=True).coalesce()
        with warnings.catch_warnings():   # "sparse CSR support is in beta": we rely on mm only
            warnings.simplefilter("ignore", UserWarning)
            self.a = a.to_sparse_csr()
            self.a_t = a.t().coalesce().to_sparse_csr()
        self.num_pairs = num_pairs

    def to(self, device: torch.device, dtype: torch.dtype) -> "_PairStructure":
        """Move the indices to `device` and the normalisation values to `device`/`dtype`."""
        self.pair_src, self.pair_rel = self.pair_src.to(device), self.pair_rel.to(device)
        self.a, self.a_t = self.a.to(device=device, dtype=dtype), self.a_t.to(device=device, dtype=dtype)
        return self


class _RelationalPropagation(torch.autograd.Function):
    """A @ M with M[p] = sum_b comp[rel_p, b] * basis[b, src_p], chunked, hand-written backward."""

    # Under mixed precision (CUDA float16, CPU bfloat16: `train.cpu_bf16`) the propagation runs in
    # float32: the sparse products take one dtype for both operands, the graph's normalisation values
    # are float32, and sums over many messages keep their precision. (Its backward runs outside any
    # autocast: the trainer calls backward() after the autocast block.)
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, comp: torch.Tensor, basis: torch.Tensor, graph: _PairStructure,
                chunk: int) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return _RelationalPropagation._forward(ctx, comp, basis, graph, chunk)

    @staticmethod
    def _forward(ctx, comp: torch.Tensor, basis: torch.Tensor, graph: _PairStructure, chunk: int) -> torch.Tensor:
        pair_src, pair_rel = graph.pair_src, graph.pair_rel
        num_pairs, dim = pair_src.numel(), basis.shape[2]
        out = basis.new_empty(num_pairs, dim)
        for start in range(0, num_pairs, chunk):
            src = pair_src[start:start + chunk]
            coef = comp.index_select(0, pair_rel[start:start + chunk])          # [c, B]
            rows = basis.index_select(1, src).transpose(0, 1)                    # [c, B, D]
            out[start:start + chunk] = torch.bmm(coef.unsqueeze(1), rows).squeeze(1)
        ctx.save_for_backward(comp, basis)
        ctx.graph, ctx.chunk = graph, chunk
        return torch.sparse.mm(graph.a, out)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out: torch.Tensor):
        comp, basis = ctx.saved_tensors
        graph, chunk = ctx.graph, ctx.chunk
        pair_src, pair_rel = graph.pair_src, graph.pair_rel
        grad_m = torch.sparse.mm(graph.a_t, grad_out.contiguous())             # [P, D]
        grad_comp = torch.zeros_like(comp) if ctx.needs_input_grad[0] else None
        grad_basis = torch.zeros_like(basis) if ctx.needs_input_grad[1] else None
        for start in range(0, pair_src.numel(), chunk):
            src = pair_src[start:start + chunk]
            rel = pair_rel[start:start + chunk]
            g = grad_m[start:start + chunk]                                      # [c, D]
            if grad_basis is not None:                 # d basis[b, src_p] += comp[rel_p, b] * g[p]
                coef = comp.index_select(0, rel)                                 # [c, B]
                contrib = coef.t().unsqueeze(2) * g.unsqueeze(0)                 # [B, c, D]
                grad_basis.index_add_(1, src, contrib)
            if grad_comp is not None:                  # d comp[rel_p, b] += <g[p], basis[b, src_p]>
                rows = basis.index_select(1, src).transpose(0, 1)                # [c, B, D]
                dots = torch.bmm(rows, g.unsqueeze(2)).squeeze(2)                # [c, B]
                grad_comp.index_add_(0, rel, dots)
        return grad_comp, grad_basis, None, None


class FeaturelessRGCN(nn.Module):
    """One R-GCN layer over learned node embeddings (no input features), basis-decomposed (Eq. 2).

    Parameters match ``torch_geometric.nn.RGCNConv(num_nodes, out_dim, num_relations, num_bases)``:
    `weight` [B, N, D] (the bases), `comp` [R, B], `root` [N, D], `bias` [D].
    """

    def __init__(self, num_nodes: int, out_dim: int, num_relations: int, num_bases: int,
                 edge_index: torch.Tensor, edge_type: torch.Tensor, aggr: str = "mean",
                 chunk: int = 4096, init: str = "glorot") -> None:
        super().__init__()
        self.num_nodes, self.out_dim = num_nodes, out_dim
        self.num_relations, self.num_bases, self.chunk = num_relations, num_bases, chunk
        self.weight = nn.Parameter(torch.empty(num_bases, num_nodes, out_dim))
        self.comp = nn.Parameter(torch.empty(num_relations, num_bases))
        self.root = nn.Parameter(torch.empty(num_nodes, out_dim))
        self.bias = nn.Parameter(torch.empty(out_dim))
        self._graph = _PairStructure(edge_index, edge_type, num_nodes, num_relations, aggr)
        self._graph_place = (torch.device("cpu"), torch.float32)
        if init not in ("glorot", "release"):
            raise ValueError(f"init must be 'glorot' or 'release', got {init!r}")
        self.init = init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform bases, comp and root, zero bias (PyG >= 1.4's initialisation); or, with
        init="release", PyG 1.3.2's (which the KGSF release pins): every parameter, bias included,
        uniform in +-1/sqrt(num_bases * num_nodes)."""
        if self.init == "release":
            bound = 1.0 / math.sqrt(self.num_bases * self.num_nodes)
            for p in (self.weight, self.comp, self.root, self.bias):
                nn.init.uniform_(p, -bound, bound)
            return
        for p in (self.weight, self.comp, self.root):
            fan_in, fan_out = p.shape[-2], p.shape[-1]
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            nn.init.uniform_(p, -bound, bound)
        nn.init.zeros_(self.bias)

    def forward(self) -> torch.Tensor:
        """Node representations [N, D] (before any non-linearity)."""
        place = (self.weight.device, self.weight.dtype)
        if self._graph_place != place:
            self._graph = self._graph.to(*place)
            self._graph_place = place
        g = self._graph
        return _RelationalPropagation.apply(self.comp, self.weight, g, self.chunk) + self.root + self.bias


class WordGraphEncoder(nn.Module):
    """GCN over the word-oriented KG (ConceptNet) on learned word embeddings (KGSF Eq. 1).

    Eq. 1 is PyG's GCNConv (symmetric normalisation D^-1/2 A D^-1/2 with self-loops); the
    activation is optional because the original KGSF code applies none.
    """

    def __init__(self, num_words: int, dim: int, edge_index: torch.Tensor, activation: bool) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv
        self.embedding = nn.Embedding(num_words, dim)
        nn.init.normal_(self.embedding.weight, std=dim ** -0.5)
        self.conv = GCNConv(dim, dim)
        self.register_buffer("edge_index", edge_index.long(), persistent=False)
        self.activation = activation

    def forward(self) -> torch.Tensor:
        """Word representations V [num_words, dim]."""
        out = self.conv(self.embedding.weight, self.edge_index)
        return torch.relu(out) if self.activation else out
