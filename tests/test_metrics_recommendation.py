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


def test_minus_inf_is_a_score_and_nan_is_an_error():
    from crsbench.errors import TrainingError
    scores = torch.tensor([[0.0, -math.inf, -math.inf, 1.0]])
    # target 1 (-inf): 0.0 and 1.0 above, item 2 tied at -inf counts against it -> rank 4
    assert target_ranks(scores, torch.tensor([1])).tolist() == [4]
    with pytest.raises(TrainingError, match="NaN"):
        target_ranks(torch.tensor([[0.1, float("nan")]]), torch.tensor([0]))


def test_ranks_do_not_depend_on_how_rows_are_batched():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (7, 9), generator=gen).float()     # many ties on purpose
    targets = torch.randint(0, 9, (7,), generator=gen)
    whole = target_ranks(scores, targets)
    parts = torch.cat([target_ranks(scores[i:i + 3], targets[i:i + 3]) for i in range(0, 7, 3)])
    assert torch.equal(whole, parts)
    # the definition, counted directly: items with a score >= the target's (the target included)
    assert whole.tolist() == [int((scores[r] >= scores[r, targets[r]]).sum()) for r in range(7)]


def test_bad_cut_offs_are_config_errors_naming_the_key():
    from crsbench.errors import ConfigError
    with pytest.raises(ConfigError, match="eval.ks"):
        ranking_metrics([1, 2], ks=[0])
    with pytest.raises(ConfigError, match="eval.ks"):
        ranking_metrics([1, 2], ks=["10"])
