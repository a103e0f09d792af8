"""KBRD recommender (Chen et al., EMNLP 2019): knowledge-based user model over DBpedia.

The context's entities are encoded by a featureless R-GCN over the DBpedia subgraph, pooled by
self-attention into a user vector, and every candidate item is scored by a dot product with its
entity representation plus an item bias.

Conversation: a Transformer encoder-decoder over the context whose output logits get a
vocabulary bias computed from the user vector, b_u = W_2 relu(W_1 u), which promotes words related
to the entities the user talked about (the paper's §3.2). The recommender is frozen while the
conversation stage trains.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from crsbench import register_model
from crsbench.datasets.instances import RecInstance, Sample
from crsbench.datasets.types import DatasetBundle
from crsbench.models.base import CONV, REC, Stage
from crsbench.models.conversation import (CONVERSATION_CONFIG, ConversationModel, GenerationState, ResponseGenerator,
                                          advance_transformer, collate_conversation)
from crsbench.models.graph import FeaturelessRGCN
from crsbench.models.layers import AttentionPooling, pad_ids


@register_model("kbrd")
class KBRD(ConversationModel):
    """KBRD: R-GCN entity encoder + self-attentive user representation, Transformer with a
    user-dependent vocabulary bias."""

    config_file = (CONVERSATION_CONFIG, Path(__file__).with_name("kbrd.yaml"))
    tasks = (REC, CONV)
    knowledge_modules = ("entity_encoder",)

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
        conv = config["conv"]
        self.generator = ResponseGenerator(data, conv)
        self.vocab_bias = torch.nn.Sequential(torch.nn.Linear(dim, conv["vocab_bias_hidden"]), torch.nn.ReLU(),
                                              torch.nn.Linear(conv["vocab_bias_hidden"], len(data.vocab)))

    def encode_knowledge(self) -> torch.Tensor:
        """Entity representations from the R-GCN: they do not depend on the context."""
        return self.entity_encoder()

    def stages(self) -> list[Stage]:
        recommender = lambda: [self.item_bias, *self.entity_encoder.parameters(),    # noqa: E731
                               *self.user_attention.parameters()]
        conversation = lambda: [*self.generator.parameters(), *self.vocab_bias.parameters()]  # noqa: E731
        return [Stage("rec", REC, self.rec_loss, recommender, validate=REC),
                Stage("conv", CONV, self.conv_loss, conversation, validate=CONV)]

    def collate(self, instances: Sequence[RecInstance] | Sequence[Sample], task: str) -> dict:
        samples = instances if task == CONV else [inst.sample for inst in instances]
        entities, mask = pad_ids([s.context_entities for s in samples],
                                 max_len=self.config["max_context_entities"])
        if task == CONV:
            conv = self.config["conv"]
            batch = collate_conversation(samples, self.data.vocab, conv["max_context_tokens"],
                                         conv["max_response_tokens"])
            return {**batch, "entities": entities, "entities_mask": mask}
        return {"entities": entities, "entities_mask": mask,
                "target": torch.tensor([inst.target_index for inst in instances], dtype=torch.long)}

    def _user(self, batch: dict, frozen: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Entity representations and the user vector of each context."""
        entity_reps = self.knowledge(frozen)
        return entity_reps, self.user_attention(entity_reps[batch["entities"]], batch["entities_mask"])

    def recommend(self, batch: dict) -> torch.Tensor:
        entity_reps, user = self._user(batch)
        return user @ entity_reps[self.item_entities].t() + self.item_bias

    def attention(self, batch: dict) -> dict:
        """The self-attention of the user encoder over the context entities."""
        entity_reps = self.knowledge()
        alpha = self.user_attention.weights(entity_reps[batch["entities"]], batch["entities_mask"])
        return {"entities (DBpedia)": (batch["entities"], alpha)}

    # --- conversation -----------------------------------------------------------------------
    def decode_start(self, batch: dict) -> tuple[GenerationState, int]:
        with torch.no_grad():                     # the recommender is frozen here
            _, user = self._user(batch, frozen=True)
        cache = self.generator.decoder.start([self.generator.encode(batch)])
        return GenerationState(cache, {"bias": self.vocab_bias(user)}), batch["context"].shape[0]

    def advance(self, tokens: torch.Tensor, state: GenerationState,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, GenerationState]:
        return advance_transformer(self.generator.decoder, tokens, state, keep)

    def token_logits(self, hidden: torch.Tensor, extras: dict[str, torch.Tensor],
                     training: bool = False) -> torch.Tensor:
        """Vocabulary logits R E^T plus the user's vocabulary bias b_u."""
        bias = extras["bias"]
        return self.generator.vocab_logits(hidden) + (bias.unsqueeze(1) if hidden.dim() == 3 else bias)

    def rec_loss(self, batch: dict) -> torch.Tensor:
        return F.cross_entropy(self.recommend(batch), batch["target"])
