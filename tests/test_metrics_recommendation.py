"""Ranking metrics against values computed by hand."""
import math

import pytest
import torch

from crsbench.metrics.recommendation import ranking_metrics, target_ranks


def test_ranks_are_one_based_and_ties_count_against_the_target():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3],     # target 2 (0.5): only 0.9 above -> rank 2
                           [0.2, 0.2, 0.2, 0.2],     # target 0, all tied -> pessimistic rank 4
                           [1.0, 0.0, 0.5, 0.5]])    # target 3 (0.5): 1.0 above, 0.5 tied -> rank 3
    assert target_ranks(scores, torch.tensor([2, 0, 3])).tolist() == [2, 4, 3]


def test_recall_mrr_ndcg_by_hand():
    ranks = [1, 2, 4, 60]
    m = ranking_metrics(ranks, ks=[1, 3, 50])
    assert m["count"] == 4
    assert m["recall@1"] == pytest.approx(1 / 4)
    assert m["recall@3"] == pytest.approx(2 / 4)             # ranks 1, 2
    assert m["recall@50"] == pytest.approx(3 / 4)            # 60 is out
    assert m["mrr@1"] == pytest.approx(1 / 4)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 2) / 4)
    assert m["mrr@50"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 4)
    # ndcg: 1/log2(2)=1, 1/log2(3)=0.6309, 1/log2(5)=0.4307
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["ndcg@50"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)


def test_empty_view_gives_zero_and_count_zero():
    m = ranking_metrics([], ks=[10])
    assert m == {"count": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "ndcg@10": 0.0}
