"""KBRD recommender (Chen et al., EMNLP 2019): knowledge-based user model over DBpedia.

The context's entities are encoded by a featureless R-GCN over the DBpedia subgraph, pooled by
self-attention into a user vector, and every candidate item is scored by a dot product with its
entity representation plus an item bias. The conversation side (vocabulary bias from the user
vector) belongs to the conversation stage and is not part of this file.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from crsbench import register_model
from crsbench.datasets.instances import RecInstance
from crsbench.datasets.types import DatasetBundle
from crsbench.models.base import REC, CRSModel, Stage
from crsbench.models.graph import FeaturelessRGCN
from crsbench.models.layers import AttentionPooling, pad_ids


@register_model("kbrd")
class KBRD(CRSModel):
    """KBRD: R-GCN entity encoder + self-attentive user representation (recommender)."""

    config_file = Path(__file__).with_name("kbrd.yaml")
    tasks = (REC,)

    def __init__(self, config: dict, data: DatasetBundle) -> None:
        super().__init__(config, data)
        kg, dim = data.entity_kg, config["dim"]
        self.entity_encoder = FeaturelessRGCN(kg.num_nodes, dim, kg.num_relations, config["num_bases"],
                                              torch.from_numpy(kg.edge_index),
                                              torch.from_numpy(kg.edge_type))
        self.user_attention = AttentionPooling(dim)
        self.item_bias = torch.nn.Parameter(torch.zeros(data.num_items))
        self.register_buffer("item_entities", torch.tensor(data.items, dtype=torch.long),
                             persistent=False)
        self._entity_cache: torch.Tensor | None = None

    @contextmanager
    def inference(self) -> Iterator[None]:
        """Encode the KG once for a whole evaluation."""
        self._entity_cache = self.entity_encoder()
        try:
            yield
        finally:
            self._entity_cache = None

    def stages(self) -> list[Stage]:
        return [Stage("rec", REC, self.rec_loss, self.parameters, validate=REC)]

    def collate(self, instances: Sequence[RecInstance], task: str) -> dict:
        entities, mask = pad_ids([inst.sample.context_entities for inst in instances],
                                 max_len=self.config["max_context_entities"])
        return {"entities": entities, "entities_mask": mask,
                "target": torch.tensor([inst.target_index for inst in instances], dtype=torch.long)}

    def recommend(self, batch: dict) -> torch.Tensor:
        entity_reps = self._entity_cache if self._entity_cache is not None else self.entity_encoder()
        user = self.user_attention(entity_reps[batch["entities"]], batch["entities_mask"])
        return user @ entity_reps[self.item_entities].t() + self.item_bias

    def rec_loss(self, batch: dict) -> torch.Tensor:
        return F.cross_entropy(self.recommend(batch), batch["target"])
