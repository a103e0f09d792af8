"""Context repeat: recommend the movies already mentioned in the context, most recent first, then
fall back to popularity. It needs no learning, and it shows how much repetition inflates Recall
under the `all` protocol (it scores 0 under `dedup` by construction)."""
from __future__ import annotations

from typing import Sequence

import torch

from baselines.popularity import Popularity
from crsbench import register_model
from crsbench.datasets.instances import RecInstance


def items_most_recent_first(instance: RecInstance) -> list[int]:
    """Context items ordered by their latest mention (latest first), without repeats."""
    seen: set[int] = set()
    ordered: list[int] = []
    for turn in reversed(instance.sample.context):
        for item in reversed(turn.items):
            if item not in seen:
                seen.add(item)
                ordered.append(item)
    return ordered


@register_model("context_repeat")
class ContextRepeat(Popularity):
    """Scores: context items above everything else by recency, the rest by training popularity."""

    def collate(self, instances: Sequence[RecInstance], task: str) -> dict:
        index = self.data.item_index
        recent = [[index[i] for i in items_most_recent_first(inst) if i in index] for inst in instances]
        rows = [r for r, items in enumerate(recent) for _ in items]
        cols = [c for items in recent for c in items]
        # Most recent gets the highest boost; every boost exceeds any popularity score in [0, 1).
        boost = [2.0 + len(items) - k for items in recent for k in range(len(items))]
        return {"size": len(instances), "rows": torch.tensor(rows, dtype=torch.long),
                "cols": torch.tensor(cols, dtype=torch.long), "boost": torch.tensor(boost)}

    def recommend(self, batch: dict) -> torch.Tensor:
        popularity = self.counts / (self.counts.max() + 1.0)
        scores = popularity.unsqueeze(0).repeat(batch["size"], 1)
        scores[batch["rows"], batch["cols"]] = batch["boost"].to(scores.dtype)
        return scores
