"""Evaluation instances and their three views on the tiny fixture (counts checked by hand)."""
from crsbench.datasets.instances import build_instances


def test_samples_and_views(tiny_bundle):
    inst = build_instances(tiny_bundle)
    train = inst["train"]
    # t1 has recommender turns 1 and 3, t2 turn 1, t3 turn 1
    assert [(s.conv_id, s.turn_index) for s in train.samples] == [("t1", 1), ("t1", 3), ("t2", 1), ("t3", 1)]
    # targets: t1/1 -> 101; t1/3 -> 102, 101; t2/1 -> 101; t3/1 -> 104
    assert [r.target for r in train.rec] == [1, 2, 1, 1, 4]
    s = train.samples[1]
    assert s.context_items == [0, 1]
    assert s.context_entities == [0, 7, 1]
    assert s.context_words == [1, 2, 3]
    # dedup drops t1/3 -> 101 (mentioned in turn 1); cold start = contexts without items (t2/1)
    assert train.views["dedup"] == [0, 1, 3, 4]
    assert train.views["cold_start"] == [3]
    test = inst["test"]
    assert [r.target for r in test.rec] == [1, 0, 1]
    assert test.views["dedup"] == [0, 2]
    assert test.views["cold_start"] == [2]
    assert test.counts() == {"samples": 2, "rec_all": 3, "rec_dedup": 2, "rec_cold_start": 1}


def test_first_turn_is_never_a_sample(tiny_bundle):
    from crsbench.datasets.types import RECOMMENDER
    conv = tiny_bundle.splits["valid"][0]
    conv.turns[0].role = RECOMMENDER
    inst = build_instances(tiny_bundle)["valid"]
    assert [s.turn_index for s in inst.samples] == [1]
