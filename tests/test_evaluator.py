"""The evaluator on the tiny fixture with models whose outputs are fixed (expected values by hand),
and once on the real ReDial test split against an independent count."""
import json
import math

import pytest
import torch

from crsbench.datasets.instances import build_instances
from crsbench.errors import ConfigError, TrainingError
from crsbench.evaluator import evaluate_generation, evaluate_recommendation, write_predictions
from crsbench.models.base import CONV, REC, CRSModel

VIEWS = ["all", "dedup", "cold_start"]


class FixedScores(CRSModel):
    """Scores item index i as -i (item 0 first); records which samples it is asked to score."""

    tasks = (REC,)

    def __init__(self, data):
        super().__init__({}, data)
        self.weight = torch.nn.Parameter(torch.zeros(1))      # so that train()/eval() and device work
        self.seen = []
        self.modes = []

    def collate(self, instances, task):
        self.seen += [inst.sample.sample_id for inst in instances] if task == REC else []
        return {"n": len(instances)}

    def recommend(self, batch):
        self.modes.append(self.training)
        return -torch.arange(self.data.num_items, dtype=torch.float).expand(batch["n"], -1)


def test_views_and_hand_computed_metrics(tiny_bundle):
    model = FixedScores(tiny_bundle)
    model.train()
    test = build_instances(tiny_bundle)["test"]
    # test samples: x1 (context mentions item 0) -> targets item 1 (rank 2) and item 0 (rank 1);
    # x2 (no item in context) -> target item 1 (rank 2).
    metrics, records = evaluate_recommendation(model, test, VIEWS, [1, 2], 1)
    assert metrics["all/count"] == 3
    assert metrics["all/recall@1"] == pytest.approx(1 / 3)
    assert metrics["all/recall@2"] == pytest.approx(1.0)
    assert metrics["all/mrr@2"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert metrics["all/ndcg@2"] == pytest.approx((1 / math.log2(3) + 1 + 1 / math.log2(3)) / 3)
    assert metrics["dedup/count"] == 2 and metrics["dedup/recall@1"] == 0.0     # item 0 was in context
    assert metrics["dedup/mrr@2"] == pytest.approx(0.5)
    assert metrics["cold_start/count"] == 1 and metrics["cold_start/mrr@2"] == pytest.approx(0.5)
    assert sorted(model.seen) == [0, 1]                   # each distinct context scored once
    assert model.modes == [False, False] and model.training   # eval mode inside, restored after
    assert [r["rank"] for r in records] == [2, 1, 2]
    assert [r["target"] for r in records] == [1, 0, 1]
    assert records[0]["views"] == ["all", "dedup"]
    assert records[1]["views"] == ["all"] and records[2]["views"] == ["all", "dedup", "cold_start"]
    assert records[0]["top_items"] == [0, 1, 2, 3, 4, 5]   # entity ids, best first (6 items < 10)
    assert records[0]["conv_id"] == "x1" and records[2]["turn_index"] == 1


def test_batch_size_does_not_change_the_result(tiny_bundle):
    test = build_instances(tiny_bundle)["test"]
    one = evaluate_recommendation(FixedScores(tiny_bundle), test, VIEWS, [1, 3], 1)
    many = evaluate_recommendation(FixedScores(tiny_bundle), test, VIEWS, [1, 3], 64)
    assert one == many


def test_only_requested_views_are_reported(tiny_bundle):
    metrics, records = evaluate_recommendation(FixedScores(tiny_bundle), build_instances(tiny_bundle)["test"],
                                               ["dedup"], [1], 4)
    assert set(metrics) == {"dedup/count", "dedup/recall@1", "dedup/mrr@1", "dedup/ndcg@1"}
    assert [r["views"] for r in records] == [["dedup"], [], ["dedup"]]


def test_bad_settings_and_bad_scores_are_clear_errors(tiny_bundle):
    test = build_instances(tiny_bundle)["test"]
    with pytest.raises(ConfigError, match="eval.views.*'nope'") as info:
        evaluate_recommendation(FixedScores(tiny_bundle), test, ["all", "nope"], [1], 4)
    assert "cold_start" in info.value.hint
    with pytest.raises(ConfigError, match="eval.batch_size"):
        evaluate_recommendation(FixedScores(tiny_bundle), test, ["all"], [1], 0)

    class WrongShape(FixedScores):
        def recommend(self, batch):
            return torch.zeros(batch["n"], 3)

    model = WrongShape(tiny_bundle)
    model.train()
    with pytest.raises(TrainingError, match=r"WrongShape.recommend returned \(\d, 3\), expected"):
        evaluate_recommendation(model, test, ["all"], [1], 4)
    assert model.training                                  # restored even on error


class FixedTalker(FixedScores):
    """Generates a fixed response per sample and reports a fixed NLL per gold response."""

    tasks = (REC, CONV)
    RESPONSES = {0: ["@101", "is", "good", "__end__", "x"], 1: ["is", "good", "__pad__"]}
    NLL = {0: (2.0, 3), 1: (4.0, 2)}

    def collate(self, instances, task):
        if task == REC:
            return super().collate(instances, task)
        return {"ids": [s.sample_id for s in instances]}

    def generate(self, batch, max_length, beam_size=1):
        assert (max_length, beam_size) == (20, 1)
        return [self.RESPONSES[i] for i in batch["ids"]]

    def response_nll(self, batch):
        return (torch.tensor([self.NLL[i][0] for i in batch["ids"]]),
                torch.tensor([self.NLL[i][1] for i in batch["ids"]]))


def test_generation_metrics_by_hand(tiny_bundle):
    tiny_bundle.mention_items = {"@100": 0, "@101": 1}
    test = build_instances(tiny_bundle)["test"]
    model = FixedTalker(tiny_bundle)
    metrics, records = evaluate_generation(model, test, batch_size=1, max_length=20, beam_size=1)
    # cut responses: ["@101","is","good"], ["is","good"]; gold: ["@101","and","@100"], ["@101"]
    # bigrams (@101,is) (is,good) | (is,good): distinct 2, total 3, 2 responses
    assert metrics["gen/count"] == 2
    assert metrics["gen/dist@2"] == pytest.approx(1.0) and metrics["gen/dist_ratio@2"] == pytest.approx(2 / 3)
    assert metrics["gen/dist@3"] == pytest.approx(0.5) and metrics["gen/dist_ratio@3"] == pytest.approx(1.0)
    assert metrics["gen/dist@4"] == 0.0
    assert metrics["gen/item_ratio"] == pytest.approx(0.5)                # one "@101" in 2 responses
    # BLEU-1: response 1 matches "@101" of 3 words, same length (BP 1) -> 1/3; response 2 matches
    # nothing -> 0; mean 1/6
    assert metrics["gen/bleu@1"] == pytest.approx(1 / 6)
    assert metrics["gen/ppl"] == pytest.approx(math.exp((2.0 + 4.0) / (3 + 2)))
    # text output shows movies by title; the exact tokens and the generated items are kept too
    assert records[0]["generated"] == "Movie 1 is good" and records[1]["generated"] == "is good"
    assert records[0]["generated_tokens"] == "@101 is good" and records[0]["generated_items"] == [1]
    # x1: context "like @100" (item 0), gold "@101 and @100" (items 1, 0)
    assert records[0]["gold_items"] == [1, 0] and records[0]["context_items"] == [0]
    assert records[0]["gold"] == "Movie 1 and Movie 0" and records[0]["context"] == ["seeker: like Movie 0"]
    assert records[1]["recommended"] == [0, 1, 2, 3, 4, 5]
    assert records[1]["recommended_titles"][:2] == ["Movie 0", "Movie 1"]
    # x2's sample has a target, so both samples were asked for a recommendation, once each
    assert sorted(model.seen) == [0, 1]


def test_generation_without_nll_has_no_perplexity(tiny_bundle):
    class NoNll(FixedTalker):
        tasks = (CONV,)

        def response_nll(self, batch):
            raise NotImplementedError

    metrics, records = evaluate_generation(NoNll(tiny_bundle), build_instances(tiny_bundle)["test"], 8, 20, 1)
    assert "gen/ppl" not in metrics and "gen/dist@2" in metrics
    assert "recommended" not in records[0]


def test_predictions_are_written_as_jsonl(tiny_bundle, tmp_path):
    model = FixedScores(tiny_bundle)
    _, records = evaluate_recommendation(model, build_instances(tiny_bundle)["test"], ["all"], [1], 8)
    write_predictions(tmp_path / "p.jsonl", records)
    lines = (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["rank"] for line in lines] == [2, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["p.jsonl"]           # no temp file left behind


class MostRecentContextItem(CRSModel):
    """Real-data check: scores the context's items by recency (latest 1.0, earlier less), others 0."""

    def __init__(self, data):
        super().__init__({}, data)
        self.scored = 0

    def collate(self, instances, task):
        self.scored += len(instances)
        scores = torch.zeros(len(instances), self.data.num_items)
        for row, inst in enumerate(instances):
            order = [i for turn in inst.sample.context for i in turn.items]   # oldest first
            for rank_from_end, item in enumerate(reversed(order)):
                j = self.data.item_index.get(item)
                if j is not None and scores[row, j] == 0:
                    scores[row, j] = 1.0 / (1 + rank_from_end)
        return scores

    def recommend(self, batch):
        return batch


def test_real_redial_test_split_against_an_independent_count(redial):
    test = redial.instances["test"]
    model = MostRecentContextItem(redial.bundle)
    metrics, records = evaluate_recommendation(model, test, VIEWS, [1, 10, 50], 256)
    assert model.scored == len({r.sample.sample_id for r in test.rec})    # each sample scored once
    # recall@1 counted directly: the target is the item mentioned last in the context
    def last_item(inst):
        order = [i for turn in inst.sample.context for i in turn.items if i in redial.bundle.item_index]
        return order[-1] if order else None
    expected = sum(last_item(r) == r.target for r in test.rec) / len(test.rec)
    assert metrics["all/recall@1"] == pytest.approx(expected)
    assert 0.01 < metrics["all/recall@1"] < 0.1          # the notes report 0.043 for this baseline
    # every non-context item ties at 0 and ties count against the target: nothing to gain
    # outside the context, so dedup and cold start score exactly 0
    for view in ("dedup", "cold_start"):
        assert metrics[f"{view}/count"] == len(test.views[view]) > 0
        assert metrics[f"{view}/recall@50"] == 0.0
    # within the top 50, a hit is exactly a target already mentioned in the context
    in_context = (len(test.views["all"]) - len(test.views["dedup"])) / len(test.rec)
    assert metrics["all/recall@50"] == pytest.approx(in_context)
    assert metrics["all/count"] == len(test.rec) == len(records)
    assert all(r["rank"] == redial.bundle.num_items for r in records if "cold_start" in r["views"])


def test_generation_batches_by_length_but_reports_in_split_order(tiny_bundle):
    from crsbench.datasets.instances import SplitInstances
    test = build_instances(tiny_bundle)["test"]
    # longest context first: the evaluator decodes the shorter one first, then restores this order
    samples = sorted(test.samples, key=lambda s: -sum(len(t.tokens) for t in s.context))
    assert [s.sample_id for s in samples] == [1, 0]
    reordered = SplitInstances("test", samples, test.rec, test.views)
    model = FixedTalker(tiny_bundle)
    _, records = evaluate_generation(model, reordered, batch_size=1, max_length=20, beam_size=1)
    assert [r["sample_id"] for r in records] == [1, 0]
    assert records[0]["generated"] == "is good" and records[1]["generated"] == "@101 is good"
    assert model.seen == [0, 1]                          # asked in length order


def test_release_dist_keeps_the_words_after_the_end_token(tiny_bundle):
    """With greedy decoding, dist_release@n scores every non-special token of the whole decoding, as
    the KGSF release's vector2sentence does; crsbench's dist@n stops at the end token."""
    class FullTalker(FixedTalker):
        FULL = {0: ["@101", "is", "good", "__end__", "good", "movie", "__unk__"],
                1: ["is", "good", "__end__", "__pad__", "good", "movie"]}

        def generate(self, batch, max_length, beam_size=1, no_repeat_ngram=0, full=False):
            assert not no_repeat_ngram
            return [self.FULL[i] if full else self.RESPONSES[i] for i in batch["ids"]]

    metrics, records = evaluate_generation(FullTalker(tiny_bundle), build_instances(tiny_bundle)["test"], 1, 20, 1)
    # release tokens: [@101 is good good movie], [is good good movie]
    # bigrams: (@101,is) (is,good) (good,good) (good,movie) | (is,good) (good,good) (good,movie): 4 distinct
    assert metrics["gen/dist_release@2"] == pytest.approx(4 / 2)
    assert metrics["gen/dist@2"] == pytest.approx(1.0)                # the cut responses, as before
    assert records[0]["generated_release"] == "@101 is good good movie"
    # beam search has no tokens after the end: no release variant
    beam, _ = evaluate_generation(FullTalker(tiny_bundle), build_instances(tiny_bundle)["test"], 1, 20, 2)
    assert "gen/dist_release@2" not in beam and "gen/dist@2" in beam


def test_no_repeat_ngram_blocks_a_repeated_bigram():
    from crsbench.models.decoding import block_repeats
    history = torch.tensor([[5, 6, 7, 5], [1, 2, 3, 4]])
    out = block_repeats(torch.zeros(2, 10), history, 2)
    assert out[0, 6] == float("-inf") and torch.isfinite(out[0]).sum() == 9     # "5 6" seen: 6 banned after 5
    assert torch.isfinite(out[1]).all()
    assert torch.equal(block_repeats(torch.zeros(2, 10), history, 0), torch.zeros(2, 10))


def test_other_contexts_pair_every_sample_with_another_ones_context(tiny_bundle):
    from crsbench.evaluator import with_other_contexts
    samples = build_instances(tiny_bundle)["train"].samples
    other = with_other_contexts(samples, seed=1)
    assert [s.response for s in other] == [s.response for s in samples]
    contexts = [s.context for s in samples]
    assert sorted(map(id, (s.context for s in other))) == sorted(map(id, contexts))   # a permutation
    assert [s.context for s in other] != contexts
    for s in other:                                   # a context moves with its items, entities, words
        donor = next(d for d in samples if d.context is s.context)
        assert (s.context_items, s.context_entities, s.context_words) == \
            (donor.context_items, donor.context_entities, donor.context_words)
    assert [id(s.context) for s in with_other_contexts(samples, seed=1)] == [id(s.context) for s in other]


def test_context_use_is_one_exactly_when_the_decoder_ignores_its_encoder(tiny_bundle):
    """gen/context_gain = ppl with another sample's context / ppl with the own one: a Transformer
    reads its context (gain != 1); with the encoder's output replaced by zeros it cannot (gain 1)."""
    from baselines.transformer import Transformer
    from crsbench.evaluator import evaluate_context_use
    from conftest import model_defaults
    settings = model_defaults(Transformer)
    settings["conv"].update(dim=8, ffn=8)
    torch.manual_seed(0)
    model = Transformer(settings, tiny_bundle)
    train = build_instances(tiny_bundle)["train"]
    reading = evaluate_context_use(model, train, batch_size=2)
    assert reading["gen/context_gain"] == pytest.approx(reading["gen/ppl_other_context"] / reading["gen/ppl"])
    assert abs(reading["gen/context_gain"] - 1.0) > 1e-4
    encode = model.generator.encode
    model.generator.encode = lambda batch: (torch.zeros_like(encode(batch)[0]), encode(batch)[1])
    blind = evaluate_context_use(model, train, batch_size=2)
    assert blind["gen/context_gain"] == pytest.approx(1.0, abs=1e-6)
