"""Generation metrics against values computed by hand."""
import math

import pytest

from crsbench.datasets.text import is_mention
from crsbench.metrics.generation import (bleu, cut_response, distinct, generation_metrics, item_mention_profile,
                                         item_ratio, perplexity)

R1 = ["i", "like", "@1", "a", "lot", "__end__", "junk", "junk"]
R2 = ["i", "like", "it", "__end__"]
R3 = ["__end__", "x"]           # empty once cut


def test_cut_at_end_token_and_drop_padding():
    assert cut_response(R1) == ["i", "like", "@1", "a", "lot"]
    assert cut_response(["a", "__pad__", "b"]) == ["a", "b"]
    assert cut_response(R3) == []


def test_distinct_both_definitions_by_hand():
    # bigrams: R1 -> (i,like) (like,@1) (@1,a) (a,lot); R2 -> (i,like) (like,it); R3 -> none
    # distinct = 5, total = 6, responses = 3
    dist, ratio = distinct([R1, R2, R3], 2)
    assert dist == pytest.approx(5 / 3)
    assert ratio == pytest.approx(5 / 6)
    # trigrams: R1 -> 3, R2 -> 1, all distinct: 4 / 3 responses, 4 / 4
    assert distinct([R1, R2, R3], 3) == (pytest.approx(4 / 3), pytest.approx(1.0))
    # after the end token nothing counts: "a b __end__ c d" has the one bigram (a,b)
    assert distinct([["a", "b", "__end__", "c", "d"]], 2) == (1.0, 1.0)


def test_item_ratio_counts_mentions_per_response():
    assert item_ratio([R1, R2, R3], is_mention) == pytest.approx(1 / 3)
    assert item_ratio([["@1", "@2", "@1"]], is_mention) == pytest.approx(3.0)
    assert item_ratio([], is_mention) == 0.0


def test_bleu_perfect_zero_and_partial():
    assert bleu([R2], [R2], 2) == pytest.approx(1.0)
    assert bleu([R3], [R2], 1) == 0.0                         # empty hypothesis scores 0
    # hyp "i like it" vs ref "i like @1 a lot": 2 of 3 unigrams match; brevity penalty
    # BP = exp(1 - 5/3); BLEU-1 = BP * 2/3
    assert bleu([R2], [R1], 1) == pytest.approx(math.exp(1 - 5 / 3) * 2 / 3)


def test_perplexity_and_full_report():
    assert perplexity(math.log(4) * 10, 10) == pytest.approx(4.0)
    assert perplexity(1.0, 0) == float("inf")
    m = generation_metrics([R1, R2, R3], [R1, R2, R2], is_mention)
    assert set(m) >= {"dist@2", "dist@3", "dist@4", "dist_ratio@2", "item_ratio", "bleu@1", "bleu@4"}
    assert m["dist@4"] == pytest.approx(2 / 3)                 # R1 has 2 four-grams, R2 none


def test_bleu_is_cumulative_with_smoothing_method_1():
    # hyp "i like it" vs ref "i like @1 a lot": p1 = 2/3, p2 = 1/2 ((i,like) matches),
    # p3 = 0 matches of 1 trigram -> smoothed 0.1/1, p4 = 0 of 0 four-grams -> 0.1/1.
    bp = math.exp(1 - 5 / 3)
    assert bleu([R2], [R1], 2) == pytest.approx(bp * (2 / 3 * 1 / 2) ** (1 / 2))   # not bp * 1/2
    assert bleu([R2], [R1], 3) == pytest.approx(bp * (2 / 3 * 1 / 2 * 0.1) ** (1 / 3))
    assert bleu([R2], [R1], 4) == pytest.approx(bp * (2 / 3 * 1 / 2 * 0.1 * 0.1) ** (1 / 4))
    # sentence level, averaged: a perfect response and an empty one average to 1/2
    assert bleu([R2, R3], [R2, R2], 1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        bleu([R2], [R1, R2], 1)


def test_empty_inputs_have_defined_values():
    assert distinct([], 2) == (0.0, 0.0)
    assert distinct([R3, ["__end__"]], 2) == (0.0, 0.0)        # responses, but no n-grams
    m = generation_metrics([R3], [R2], is_mention)
    assert m["count"] == 1.0 and m["item_ratio"] == 0.0 and m["bleu@1"] == 0.0 and m["dist@2"] == 0.0
    m = generation_metrics([], [], is_mention)
    assert m["count"] == 0.0 and all(v == 0.0 for v in m.values())


def test_dist_ratio_at_4_and_the_end_token_counts():
    # R1 cut: "i like @1 a lot" -> four-grams (i,like,@1,a) (like,@1,a,lot); repeated twice:
    # distinct 2, total 4, responses 2
    assert distinct([R1, list(R1)], 4) == (pytest.approx(1.0), pytest.approx(0.5))
    # without the cut, "lot __end__ junk junk" would add three more four-grams
    assert distinct([R1], 4)[0] == pytest.approx(2.0)


def test_perplexity_from_per_sample_values():
    import torch
    from crsbench.errors import TrainingError
    # (2 + 4) nats over (3 + 2) tokens -> exp(6/5)
    assert perplexity(torch.tensor([2.0, 4.0]), torch.tensor([3, 2])) == pytest.approx(math.exp(1.2))
    assert perplexity([2.0, 4.0], [3, 2]) == pytest.approx(math.exp(1.2))
    assert perplexity(1e6, 1) == float("inf")                   # overflow -> inf, no exception
    with pytest.raises(TrainingError, match="NaN"):
        perplexity([float("nan")], [3])


def test_detokenize_renders_titles_and_punctuation():
    from crsbench.datasets.text import detokenize, render_mentions
    titles = {"@1": "Up (2009)"}
    assert detokenize(["have", "you", "seen", "@1", "?", "it's", "great", "!"], titles) == \
        "have you seen Up (2009)? it's great!"
    assert detokenize(["@2", ",", "(", "sure", ")"], titles) == "@2, (sure)"
    assert render_mentions("try @1 or @ 1 or @3", titles) == "try Up (2009) or Up (2009) or @3"


def test_item_mention_profile_by_hand():
    records = [
        {"generated_items": [5, 5, 7], "gold_items": [7], "context_items": [5], "recommended": [5, 9]},
        {"generated_items": [], "gold_items": [3], "context_items": [], "recommended": [3]},
        {"generated_items": [8], "gold_items": [], "context_items": [], "recommended": [1]},
        {"generated_items": [9], "gold_items": [9], "context_items": [9]},            # no "recommended"
    ]
    p = item_mention_profile(records)
    assert p["responses"] == 4 and p["item_ratio"] == 5 / 4 and p["with_item"] == 3 / 4
    assert p["distinct_items"] == 4                       # 5, 7, 8, 9
    assert p["repeated"] == 1 / 5                         # the second 5
    assert p["gold"] == 2 / 5 and p["context"] == 3 / 5 and p["top10"] == 2 / 5
    assert item_mention_profile([])["item_ratio"] == 0.0


def test_item_share_and_distinct_count_a_repeated_movie_once():
    from crsbench.datasets.text import is_mention
    from crsbench.metrics.generation import generation_metrics, item_ratio, item_spread
    responses = [["try", "@1", "@1", "__end__", "@2"], ["no", "movie"], ["@3", "or", "@4"], []]
    assert item_ratio(responses, is_mention) == pytest.approx(4 / 4)      # @1 twice, @3, @4
    assert item_spread(responses, is_mention) == (pytest.approx(2 / 4), pytest.approx(3 / 4))
    metrics = generation_metrics(responses, [["x"]] * 4, is_mention)
    assert (metrics["item_share"], metrics["item_distinct"]) == (pytest.approx(0.5), pytest.approx(0.75))
