"""KGSF §4.1: encoding the two external knowledge graphs (word-KG Eq. 1, entity-KG Eq. 2)."""
from __future__ import annotations

import torch
from torch import nn

from crsbench.datasets.types import DatasetBundle
from crsbench.models.graph import FeaturelessRGCN, WordGraphEncoder


class EntityKGEncoder(nn.Module):
    """Entity (item-oriented) KG encoder: featureless R-GCN over DBpedia (Eq. 2).

    With `use_graph=False` (the paper's "-DB" ablation, Table 2) entities keep free learned
    embeddings and no KG structure reaches them. `aggr`/`init`: "mean"/"glorot" (PyG >= 1.4, the
    default) or "add"/"release" (PyG 1.3.2's unnormalised sum and uniform init, as the release ran).
    """

    def __init__(self, data: DatasetBundle, dim: int, num_bases: int, use_graph: bool,
                 activation: bool, aggr: str = "mean", init: str = "glorot") -> None:
        super().__init__()
        kg = data.entity_kg
        self.use_graph, self.activation = use_graph, activation
        if use_graph:
            self.rgcn = FeaturelessRGCN(kg.num_nodes, dim, kg.num_relations, num_bases,
                                        torch.from_numpy(kg.edge_index), torch.from_numpy(kg.edge_type),
                                        aggr=aggr, init=init)
        else:
            self.embedding = nn.Embedding(kg.num_nodes, dim)
            nn.init.normal_(self.embedding.weight, std=dim ** -0.5)

    def forward(self) -> torch.Tensor:
        """Entity representations N [num_entities, dim]."""
        if not self.use_graph:
            return self.embedding.weight
        out = self.rgcn()
        return torch.relu(out) if self.activation else out


class WordKGEncoder(WordGraphEncoder):
    """Word-oriented KG encoder: GCN over ConceptNet (Eq. 1)."""

    def __init__(self, data: DatasetBundle, dim: int, activation: bool) -> None:
        super().__init__(data.word_kg.num_nodes, dim, torch.from_numpy(data.word_kg.edge_index),
                         activation)
