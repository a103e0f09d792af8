"""The evaluator on the tiny fixture with a model whose scores are fixed (expected values by hand)."""
import json

import pytest
import torch

from crsbench.datasets.instances import build_instances
from crsbench.evaluator import evaluate_recommendation, write_predictions
from crsbench.models.base import CRSModel


class FixedScores(CRSModel):
    """Scores item i as -i (item 0 first), and counts how many contexts it is asked to score."""

    def __init__(self, data):
        super().__init__({}, data)
        self.seen = []

    def collate(self, instances, task):
        self.seen += [inst.sample.sample_id for inst in instances]
        return {"n": len(instances)}

    def recommend(self, batch):
        return -torch.arange(self.data.num_items, dtype=torch.float).expand(batch["n"], -1)


def test_views_and_hand_computed_metrics(tiny_bundle):
    model = FixedScores(tiny_bundle)
    test = build_instances(tiny_bundle)["test"]
    # test instances: x1 -> targets item 1 (rank 2) and item 0 (rank 1); x2 -> item 1 (rank 2)
    metrics, records = evaluate_recommendation(model, test, ["all", "dedup", "cold_start"], [1, 2], 1)
    assert metrics["all/count"] == 3
    assert metrics["all/recall@1"] == pytest.approx(1 / 3)
    assert metrics["all/recall@2"] == pytest.approx(1.0)
    assert metrics["all/mrr@2"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert metrics["dedup/count"] == 2 and metrics["dedup/recall@1"] == 0.0     # item 0 was in context
    assert metrics["cold_start/count"] == 1 and metrics["cold_start/mrr@2"] == pytest.approx(0.5)
    assert sorted(model.seen) == [0, 1]                   # each distinct context scored once
    assert [r["rank"] for r in records] == [2, 1, 2]
    assert records[1]["views"] == ["all"] and records[2]["views"] == ["all", "dedup", "cold_start"]
    assert records[0]["top_items"][:2] == [0, 1]


def test_predictions_are_written_as_jsonl(tiny_bundle, tmp_path):
    model = FixedScores(tiny_bundle)
    _, records = evaluate_recommendation(model, build_instances(tiny_bundle)["test"], ["all"], [1], 8)
    write_predictions(tmp_path / "p.jsonl", records)
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert [json.loads(line)["rank"] for line in lines] == [2, 1, 2]
