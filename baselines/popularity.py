"""Popularity: rank every candidate by how often it is recommended in the training split."""
from __future__ import annotations

from typing import Sequence

import torch

from crsbench import register_model
from crsbench.datasets.instances import RecInstance, SplitInstances
from crsbench.models.base import CRSModel


def recommendation_counts(train: SplitInstances, num_items: int) -> torch.Tensor:
    """How many training (turn, movie) instances recommend each candidate item."""
    counts = torch.zeros(num_items)
    for inst in train.rec:
        counts[inst.target_index] += 1
    return counts


@register_model("popularity")
class Popularity(CRSModel):
    """The same ranking for every context: training recommendation frequency (KGSF Table 2's baseline)."""

    def __init__(self, config: dict, data) -> None:
        super().__init__(config, data)
        # A buffer, so the statistics are saved with the run and `crsbench evaluate` can reload them.
        self.register_buffer("counts", torch.zeros(data.num_items))

    def fit(self, train: SplitInstances) -> None:
        self.counts.copy_(recommendation_counts(train, self.data.num_items))

    def collate(self, instances: Sequence[RecInstance], task: str) -> dict:
        return {"size": len(instances)}

    def recommend(self, batch: dict) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(batch["size"], -1)
