"""ReDial recommender (Li et al., NeurIPS 2018): an item-based autoencoder over the movies the
seeker mentioned, weighted by the seeker's sentiment.

Simplifications, stated: (1) the original autoencoder was pre-trained on MovieLens ratings; no
MovieLens data is available here, so it is trained on ReDial only; (2) the original predicted
the seeker's liked/disliked opinion with a sentiment module; here the seeker's own answers from
the dataset's questionnaire (`Conversation.item_feedback`) are used where the data has them, an
upper bound of that module; (3) it is trained with cross-entropy on the next recommended movie
(the evaluation protocol's target) instead of a rating reconstruction loss.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from crsbench import register_model
from crsbench.datasets.instances import RecInstance
from crsbench.datasets.types import DatasetBundle
from crsbench.models.base import REC, CRSModel, Stage

LIKED, DISLIKED, UNKNOWN = 1.0, -1.0, 0.5


@register_model("redial")
class ReDialRecommender(CRSModel):
    """ReDial: sentiment-weighted mentioned-movie vector -> autoencoder -> item scores."""

    config_file = Path(__file__).with_name("redial_rec.yaml")
    tasks = (REC,)

    def __init__(self, config: dict, data: DatasetBundle) -> None:
        super().__init__(config, data)
        self.encoder = nn.Linear(data.num_items, config["hidden"])
        self.decoder = nn.Linear(config["hidden"], data.num_items)
        self.dropout = nn.Dropout(config["dropout"])
        # sample -> its conversation's feedback, looked up when batching
        self._feedback = {conv.conv_id: conv.item_feedback
                          for convs in data.splits.values() for conv in convs}

    def stages(self) -> list[Stage]:
        return [Stage("rec", REC, self.rec_loss, self.parameters, validate=REC)]

    def _sentiment(self, conv_id: str, item: int) -> float:
        liked = self._feedback.get(conv_id, {}).get(item, {}).get("liked")
        return LIKED if liked == 1 else DISLIKED if liked == 0 else UNKNOWN

    def collate(self, instances: Sequence[RecInstance], task: str) -> dict:
        index = self.data.item_index
        ratings = torch.zeros(len(instances), self.data.num_items)
        for row, inst in enumerate(instances):
            for item in inst.sample.context_items:
                if item in index:
                    ratings[row, index[item]] = self._sentiment(inst.sample.conv_id, item)
        return {"ratings": ratings,
                "target": torch.tensor([inst.target_index for inst in instances], dtype=torch.long)}

    def recommend(self, batch: dict) -> torch.Tensor:
        hidden = torch.sigmoid(self.encoder(self.dropout(batch["ratings"])))
        return self.decoder(hidden)

    def rec_loss(self, batch: dict) -> torch.Tensor:
        return F.cross_entropy(self.recommend(batch), batch["target"])
