"""KGSF (Zhou et al., KDD 2020): KG-based semantic fusion for conversational recommendation.

This module wires the paper's parts together and declares the training procedure of
Algorithm 1: MIM pre-training of the KG encoders (§4.2), then recommendation training with the
MIM loss as a regulariser (Eq. 9), then the conversation module with the KG encoders and the
recommender frozen (§4.4, Eq. 19). The generic trainer runs the stages.
"""
from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from crsbench.datasets.instances import RecInstance, Sample
from crsbench.datasets.types import DatasetBundle
from crsbench.models.base import CONV, REC, CRSModel, Stage
from crsbench.models.conversation import CONVERSATION_CONFIG, GenerationState, collate_conversation, mean_nll, packed_nll
from crsbench.models.kgsf.generator import KGEnhancedGenerator
from crsbench.models.kgsf.knowledge import EntityKGEncoder, WordKGEncoder
from crsbench.models.kgsf.mim import MutualInformationMaximization
from crsbench.models.kgsf.recommender import KGRecommender
from crsbench.models.layers import pad_ids
from crsbench.registry import register_model


@register_model("kgsf")
class KGSF(CRSModel):
    """KGSF: word-KG (ConceptNet GCN) + entity-KG (DBpedia R-GCN) fused by MIM, gated user model."""

    config_file = (CONVERSATION_CONFIG, Path(__file__).with_name("kgsf.yaml"))
    tasks = (REC, CONV)
    knowledge_modules = ("word_kg_encoder", "entity_kg_encoder")

    def __init__(self, config: dict, data: DatasetBundle) -> None:
        super().__init__(config, data)
        dim = config["dim"]
        self.word_kg_encoder = WordKGEncoder(data, dim, config["kg_activation"])          # Eq. 1
        self.entity_kg_encoder = EntityKGEncoder(data, dim, config["num_bases"],          # Eq. 2
                                                 config["entity_kg"], config["kg_activation"])
        self.mim = MutualInformationMaximization(dim) if config["mim"] else None         # Eq. 4-6
        self.recommender = KGRecommender(dim, data.num_items, config["item_bias"])        # Eq. 6-8
        self.register_buffer("item_entities", torch.tensor(data.items, dtype=torch.long),
                             persistent=False)
        self.generator = KGEnhancedGenerator(data, dim, config["conv"], config["kg_decoder"],   # Eq. 10-18
                                             config["copy"], config["faithful_original"])

    # --- Algorithm 1 ----------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        def kg_parameters():
            return chain(self.word_kg_encoder.parameters(), self.entity_kg_encoder.parameters(),
                         self.mim.parameters())
        stages = []
        if self.mim is not None:        # line 2: pre-train the KG encoders with the MIM loss
            stages.append(Stage("pretrain", REC, self.mim_loss, kg_parameters, optional=True))
        # lines 3-8: train the recommender and the KG encoders on Eq. 9
        stages.append(Stage("rec", REC, self.rec_loss,
                            lambda: chain(self.word_kg_encoder.parameters(),
                                          self.entity_kg_encoder.parameters(),
                                          self.recommender.parameters(),
                                          self.mim.parameters() if self.mim is not None else []),
                            validate=REC))
        # lines 9-14: train the conversation module (Θ^d) on Eq. 19; the KG module stays frozen
        stages.append(Stage("conv", CONV, self.conv_loss, self.generator.parameters, validate=CONV))
        return stages

    # --- batching -------------------------------------------------------------------------
    def collate(self, instances: Sequence[RecInstance] | Sequence[Sample], task: str) -> dict:
        if task == CONV:
            return self._collate_conversation(instances)
        samples = [inst.sample for inst in instances]
        entities, entities_mask = pad_ids([s.context_entities for s in samples],
                                          max_len=self.config["max_context_entities"])
        words, words_mask = pad_ids([s.context_words for s in samples],
                                    max_len=self.config["max_context_words"])
        batch = {"entities": entities, "entities_mask": entities_mask, "words": words,
                 "words_mask": words_mask,
                 "target": torch.tensor([inst.target_index for inst in instances], dtype=torch.long)}
        if self.mim is not None:
            # entities co-occurring in the conversation: the context's and the response's
            batch["mim_entities"], batch["mim_mask"] = pad_ids(
                [s.context_entities + s.response.items + s.response.entities for s in samples])
        return batch

    # --- losses and inference -------------------------------------------------------------
    def encode_knowledge(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Word and entity representations (Eq. 1, 2): they do not depend on the context."""
        return self.word_kg_encoder(), self.entity_kg_encoder()

    def _mim(self, words_reps: torch.Tensor, entity_reps: torch.Tensor, batch: dict) -> torch.Tensor:
        positives = torch.zeros(batch["words"].shape[0], entity_reps.shape[0], device=entity_reps.device)
        rows = torch.arange(positives.shape[0], device=positives.device).unsqueeze(1)
        rows = rows.expand_as(batch["mim_entities"])
        positives[rows[batch["mim_mask"]], batch["mim_entities"][batch["mim_mask"]]] = 1.0
        return self.mim(words_reps, entity_reps, batch["words"], batch["words_mask"], positives)

    def mim_loss(self, batch: dict) -> torch.Tensor:
        """MIM pre-training objective (§4.2)."""
        word_reps, entity_reps = self.knowledge()
        return self._mim(word_reps, entity_reps, batch)

    def _scores(self, word_reps: torch.Tensor, entity_reps: torch.Tensor, batch: dict) -> torch.Tensor:
        user = self.recommender.user_representation(word_reps, entity_reps, batch["words"],
                                                    batch["words_mask"], batch["entities"],
                                                    batch["entities_mask"])
        return self.recommender.item_scores(user, entity_reps[self.item_entities])

    def rec_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Eq. 9: cross-entropy over the candidate items + lambda * MIM loss."""
        word_reps, entity_reps = self.knowledge()
        rec = F.cross_entropy(self._scores(word_reps, entity_reps, batch), batch["target"])
        if self.mim is None:
            return {"loss": rec, "rec": rec}
        mim = self._mim(word_reps, entity_reps, batch)
        return {"loss": rec + self.config["mim_weight"] * mim, "rec": rec, "mim": mim}

    def recommend(self, batch: dict) -> torch.Tensor:
        word_reps, entity_reps = self.knowledge()
        return self._scores(word_reps, entity_reps, batch)

    def attention(self, batch: dict) -> dict:
        """Eq. 6 over the context's ConceptNet words and DBpedia entities, and the gate of Eq. 7."""
        word_reps, entity_reps = self.knowledge()
        found = self.recommender.attention(word_reps, entity_reps, batch["words"], batch["words_mask"],
                                           batch["entities"], batch["entities_mask"])
        return {"words (ConceptNet)": (batch["words"], found["words"]),
                "entities (DBpedia)": (batch["entities"], found["entities"]), "gate": found["gate"]}

    # --- conversation (§4.4) ----------------------------------------------------------------
    def _collate_conversation(self, samples: Sequence[Sample]) -> dict:
        conv = self.config["conv"]
        batch = collate_conversation(samples, self.data.vocab, conv["max_context_tokens"],
                                     conv["max_response_tokens"])
        batch["entities"], batch["entities_mask"] = pad_ids([s.context_entities for s in samples],
                                                            max_len=self.config["max_context_entities"])
        batch["words"], batch["words_mask"] = pad_ids([s.context_words for s in samples],
                                                      max_len=self.config["max_context_words"])
        if self.config["faithful_original"]:        # the release counts padding as targets
            batch["response_mask"] = torch.ones_like(batch["response_mask"])
        return batch

    def decode_start(self, batch: dict) -> tuple[GenerationState, int]:
        """Encode the context (X), gather V^(C), N^(C) and the user's v(C), n(C) for the copy."""
        word_reps, entity_reps = self.knowledge(frozen=True)    # the KG module is frozen here
        cache = self.generator.transformer.decoder.start(self.generator.memories(batch, word_reps, entity_reps))
        extras = {}
        if self.generator.copy:
            with torch.no_grad():      # the recommender's pooling is part of the frozen KG module
                rec = self.recommender
                user_words = rec.word_pooling(word_reps[batch["words"]], batch["words_mask"])
                user_entities = rec.entity_pooling(entity_reps[batch["entities"]], batch["entities_mask"])
            extras["copy"] = self.generator.copy_features(user_words, user_entities)
        return GenerationState(cache, extras), batch["context"].shape[0]

    def decode_step(self, last_tokens: torch.Tensor, state: GenerationState) -> tuple[torch.Tensor, GenerationState]:
        hidden, cache = self.generator.transformer.decoder(last_tokens, state.cache)
        log_probs = self.generator.log_probs(hidden[:, -1:], state.extras.get("copy"))[:, 0]
        return log_probs, GenerationState(cache, state.extras)

    def _decoder_states(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Decoder outputs R [B, T, D] for the gold prefix, and the copy features."""
        state, _ = self.decode_start(batch)
        hidden, _ = self.generator.transformer.decoder(batch["response_in"], state.cache)
        return hidden, state.extras

    def teacher_forced_log_probs(self, batch: dict, training: bool = False) -> torch.Tensor:
        """log Pr over the vocabulary at every response position [B, T, V] given the gold prefix
        (`training`: the distribution the loss uses). The loss itself scores gold positions only."""
        hidden, extras = self._decoder_states(batch)
        dist = self.generator.training_log_probs if training else self.generator.log_probs
        return dist(hidden, extras.get("copy"))

    def _gold_nll(self, batch: dict, mask: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample NLL and count of the gold tokens where mask is True."""
        hidden, extras = self._decoder_states(batch)
        dist = self.generator.training_log_probs if training else self.generator.log_probs
        return packed_nll(hidden, extras, batch["response"], mask, lambda h, ex: dist(h, ex.get("copy")))

    def conv_loss(self, batch: dict) -> torch.Tensor:
        """Eq. 19: mean NLL of the gold response tokens under Eq. 18's distribution."""
        return mean_nll(*self._gold_nll(batch, batch["response_mask"], True))

    def response_nll(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Gold-token NLL under the distribution used for decoding (padding never counted here)."""
        return self._gold_nll(batch, batch["response"] != 0, False)
