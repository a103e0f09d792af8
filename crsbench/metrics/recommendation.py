"""Ranking metrics over (context, target item) instances, one relevant item each.

rank: 1 + the number of other candidates scored higher than OR EQUAL to the target. Ties are
broken against the target (pessimistically), so a model that scores every item the same gets
rank = number of items, not a lucky rank 1; the rule is deterministic and needs no random seed.
A score of -inf is a legal score (a masked item); NaN is not and raises TrainingError.
Recall@k (= Hit@k): number of instances with rank <= k / number of instances.
MRR@k: mean of 1/rank, counting 0 when rank > k.
NDCG@k: mean of 1/log2(rank + 1), counting 0 when rank > k (one relevant item, so IDCG = 1).
"""
from __future__ import annotations

from typing import Sequence

import torch

from crsbench.errors import ConfigError, TrainingError


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based pessimistic rank of each target: scores [n, items], targets [n] -> int64 ranks [n].

    Runs on the scores' device; callers bound memory by passing one batch of rows at a time.
    """
    if scores.dim() != 2 or targets.dim() != 1 or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"target_ranks: scores {tuple(scores.shape)} and targets {tuple(targets.shape)} "
                         "must be [n, items] and [n]")
    if scores.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    if torch.isnan(scores).any():
        raise TrainingError("the model returned NaN recommendation scores",
                            hint="the weights have probably diverged: lower the learning rate or "
                                 "check the model's recommend() for a division by zero")
    targets = targets.to(scores.device, torch.long)
    if int(targets.min()) < 0 or int(targets.max()) >= scores.shape[1]:
        raise ValueError(f"target_ranks: a target index is outside [0, {scores.shape[1]})")
    target_scores = scores.gather(1, targets.view(-1, 1))
    return (scores >= target_scores).sum(dim=1).to(torch.long)    # counts the target itself: 1-based


def check_ks(ks: Sequence[int], key: str = "eval.ks") -> list[int]:
    """The cut-offs as ints, or a ConfigError naming `key` when one is not a positive integer."""
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"{key}: cut-off {k!r} is not a positive integer",
                              hint=f"set {key} to a list such as [1, 10, 50]")
        out.append(k)
    return out


def ranking_metrics(ranks: Sequence[int] | torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """count plus recall@k, mrr@k, ndcg@k for every k, from 1-based ranks; no ranks gives 0.0 each."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64).cpu().reshape(-1)
    if ranks.numel() and float(ranks.min()) < 1:
        raise ValueError("ranking_metrics: ranks are 1-based, found a rank below 1")
    out: dict[str, float] = {"count": float(ranks.numel())}
    n = max(ranks.numel(), 1)
    for k in check_ks(ks):
        hit = (ranks <= k).to(torch.float64)
        out[f"recall@{k}"] = float(hit.sum()) / n
        out[f"mrr@{k}"] = float((hit / ranks).sum()) / n
        out[f"ndcg@{k}"] = float((hit / torch.log2(ranks + 1)).sum()) / n
    return out
