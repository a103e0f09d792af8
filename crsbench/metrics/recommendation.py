"""Ranking metrics over (context, target item) instances, one relevant item each.

rank: 1 + the number of candidates scored strictly higher than the target, plus the number of
other candidates scored exactly equal to it (ties are broken against the target, so a model
that scores everything the same gets no credit).
Recall@k (= Hit@k): share of instances with rank <= k.
MRR@k: mean of 1/rank, counting 0 when rank > k.
NDCG@k: mean of 1/log2(rank + 1), counting 0 when rank > k (one relevant item, so IDCG = 1).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based pessimistic rank of each target: scores [n, items], targets [n] -> ranks [n]."""
    target_scores = scores.gather(1, targets.view(-1, 1))
    higher_or_equal = (scores >= target_scores).sum(dim=1)     # includes the target itself
    return higher_or_equal.to(torch.long)


def ranking_metrics(ranks: Sequence[int] | torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """recall@k, mrr@k, ndcg@k for every k, from 1-based ranks; empty input gives 0.0 and count 0."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    out: dict[str, float] = {"count": float(ranks.numel())}
    n = max(ranks.numel(), 1)
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.sum()) / n
        out[f"mrr@{k}"] = float((hit / ranks).sum()) / n
        out[f"ndcg@{k}"] = float((hit / torch.log2(ranks + 1)).sum()) / n
    return out
