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

from crsbench.datasets.instances import RecInstance, Sample, SplitInstances
from crsbench.datasets.types import DatasetBundle
from crsbench.errors import ConfigError
from crsbench.models.base import CONV, REC, Stage
from crsbench.models.conversation import (CONVERSATION_CONFIG, ConversationModel, GenerationState, advance_transformer,
                                          collate_conversation)
from crsbench.models.kgsf.generator import KGEnhancedGenerator
from crsbench.models.kgsf.knowledge import EntityKGEncoder, WordKGEncoder
from crsbench.models.kgsf.mim import MutualInformationMaximization, ReleaseMIM
from crsbench.models.kgsf.recommender import KGRecommender
from crsbench.models.layers import pad_ids
from crsbench.registry import register_model


RELEASE_CONTEXT_TURNS = 5      # the release's max_count: its MIM labels come from this many last turns


@register_model("kgsf")
class KGSF(ConversationModel):
    """KGSF: word-KG (ConceptNet GCN) + entity-KG (DBpedia R-GCN) fused by MIM, gated user model."""

    config_file = (CONVERSATION_CONFIG, Path(__file__).with_name("kgsf.yaml"))
    tasks = (REC, CONV)
    knowledge_modules = ("word_kg_encoder", "entity_kg_encoder")

    def __init__(self, config: dict, data: DatasetBundle) -> None:
        super().__init__(config, data)
        for key, allowed in (("mim_form", ("crsbench", "release")), ("item_scores", ("candidates", "all_entities")),
                             ("rgcn_aggr", ("mean", "add")), ("rgcn_init", ("glorot", "release")),
                             ("rec_turns", ("targets", "all")), ("word_side", ("crsbench", "release"))):
            if config[key] not in allowed:
                raise ConfigError(f"model.{key}: unknown value {config[key]!r}",
                                  hint=f"use one of {', '.join(allowed)}")
        dim = config["dim"]
        self.word_kg_encoder = WordKGEncoder(data, dim, config["kg_activation"])          # Eq. 1
        self.entity_kg_encoder = EntityKGEncoder(data, dim, config["num_bases"],          # Eq. 2
                                                 config["entity_kg"], config["kg_activation"],
                                                 config["rgcn_aggr"], config["rgcn_init"])
        self.mim = None                                                                    # Eq. 4-6
        if config["mim"]:
            self.mim = (ReleaseMIM(dim, data.entity_kg.num_nodes) if config["mim_form"] == "release"
                        else MutualInformationMaximization(dim))
        if config["item_scores"] == "all_entities":      # the release scores every entity (own bias)
            self.entity_bias = torch.nn.Parameter(torch.zeros(data.entity_kg.num_nodes))
        self.recommender = KGRecommender(dim, data.num_items, config["item_bias"])        # Eq. 6-8
        self.register_buffer("item_entities", torch.tensor(data.items, dtype=torch.long),
                             persistent=False)
        if config["word_side"] == "release":      # token -> ConceptNet node, for the release's word side
            self._word_ids = {name: i for i, name in enumerate(data.word_kg.node_names)}
        self.generator = KGEnhancedGenerator(data, dim, config["conv"], config["kg_decoder"],   # Eq. 10-18
                                             config["copy"], config["faithful_original"])

    # --- Algorithm 1 ----------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        def kg_parameters():
            shared = self.recommender.word_pooling.parameters() if self.config["mim_form"] == "release" else []
            return chain(self.word_kg_encoder.parameters(), self.entity_kg_encoder.parameters(),
                         self.mim.parameters(), shared)
        stages = []
        turns = self._every_recommender_turn if self.config["rec_turns"] == "all" else None
        if self.mim is not None:        # line 2: pre-train the KG encoders with the MIM loss
            stages.append(Stage("pretrain", REC, self.mim_loss, kg_parameters, optional=True, instances=turns))
        # lines 3-8: train the recommender and the KG encoders on Eq. 9
        stages.append(Stage("rec", REC, self.rec_loss,
                            lambda: chain(self.word_kg_encoder.parameters(),
                                          self.entity_kg_encoder.parameters(),
                                          self.recommender.parameters(),
                                          self.mim.parameters() if self.mim is not None else [],
                                          [self.entity_bias] if hasattr(self, "entity_bias") else []),
                            validate=REC, instances=turns))
        # lines 9-14: train the conversation module (Θ^d) on Eq. 19; the KG module stays frozen
        stages.append(Stage("conv", CONV, self.conv_loss, self.generator.parameters, validate=CONV))
        return stages

    @staticmethod
    def _every_recommender_turn(split: SplitInstances) -> list[RecInstance]:
        """`rec_turns: all` (the release): every recommendation instance, plus each recommender turn
        without a candidate target as an instance with target -1, which adds the MIM loss only."""
        have = {inst.sample.sample_id for inst in split.rec}
        return split.rec + [RecInstance(s, target=-1, target_index=-1) for s in split.samples
                            if s.sample_id not in have]

    def _context_words(self, sample: Sample) -> list[int]:
        """The word side: crsbench's (unique non-stopword ConceptNet words of the whole context), or
        `word_side: release`'s: every token of the last 5 turns that is a ConceptNet node, repeats kept."""
        if self.config["word_side"] != "release":
            return sample.context_words
        ids = self._word_ids
        return [ids[t.lower()] for turn in sample.context[-RELEASE_CONTEXT_TURNS:] for t in turn.tokens
                if t.lower() in ids]

    # --- batching -------------------------------------------------------------------------
    def collate(self, instances: Sequence[RecInstance] | Sequence[Sample], task: str) -> dict:
        if task == CONV:
            return self._collate_conversation(instances)
        samples = [inst.sample for inst in instances]
        entities, entities_mask = pad_ids([s.context_entities for s in samples],
                                          max_len=self.config["max_context_entities"])
        words, words_mask = pad_ids([self._context_words(s) for s in samples],
                                    max_len=self.config["max_context_words"])
        batch = {"entities": entities, "entities_mask": entities_mask, "words": words,
                 "words_mask": words_mask,
                 "target": torch.tensor([inst.target_index for inst in instances], dtype=torch.long)}
        if self.mim is not None and self.config["mim_form"] == "release":
            # the release's labels: the movies mentioned in the context's last 5 turns
            batch["mim_entities"], batch["mim_mask"] = pad_ids(
                [[i for turn in s.context[-RELEASE_CONTEXT_TURNS:] for i in turn.items] for s in samples])
        elif self.mim is not None:
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
        if isinstance(self.mim, ReleaseMIM):
            pooled = self.recommender.word_pooling(words_reps[batch["words"]], batch["words_mask"])
            return self.mim(pooled, entity_reps, positives, batch["entities_mask"].any(dim=1))
        return self.mim(words_reps, entity_reps, batch["words"], batch["words_mask"], positives)

    def mim_loss(self, batch: dict) -> torch.Tensor:
        """MIM pre-training objective (§4.2)."""
        word_reps, entity_reps = self.knowledge()
        return self._mim(word_reps, entity_reps, batch)

    def _user(self, word_reps: torch.Tensor, entity_reps: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.recommender.user_representation(word_reps, entity_reps, batch["words"], batch["words_mask"],
                                                    batch["entities"], batch["entities_mask"])

    def _scores(self, word_reps: torch.Tensor, entity_reps: torch.Tensor, batch: dict) -> torch.Tensor:
        """Eq. 8's logits over the candidate items (with `item_scores: all_entities`, the candidate
        columns of the scores over every entity)."""
        user = self._user(word_reps, entity_reps, batch)
        if hasattr(self, "entity_bias"):
            return user @ entity_reps[self.item_entities].t() + self.entity_bias[self.item_entities]
        return self.recommender.item_scores(user, entity_reps[self.item_entities])

    def _rec_cross_entropy(self, word_reps: torch.Tensor, entity_reps: torch.Tensor, batch: dict) -> torch.Tensor:
        """The recommendation term of Eq. 9: mean cross-entropy over the candidates; or, with
        `item_scores: all_entities`, the release's: over all entities (each with its own bias),
        summed over the batch."""
        target = batch["target"]                    # -1: a turn without a target (`rec_turns: all`)
        if hasattr(self, "entity_bias"):
            targets = torch.where(target >= 0, self.item_entities[target.clamp(min=0)], -1)
            logits = F.linear(self._user(word_reps, entity_reps, batch), entity_reps, self.entity_bias)
            return F.cross_entropy(logits, targets, reduction="sum", ignore_index=-1)
        scores = self._scores(word_reps, entity_reps, batch)
        if not (target >= 0).any():
            return scores.sum() * 0.0
        return F.cross_entropy(scores, target, ignore_index=-1)

    def rec_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Eq. 9: cross-entropy over the candidate items + lambda * MIM loss."""
        word_reps, entity_reps = self.knowledge()
        rec = self._rec_cross_entropy(word_reps, entity_reps, batch)
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
        batch["words"], batch["words_mask"] = pad_ids([self._context_words(s) for s in samples],
                                                      max_len=self.config["max_context_words"])
        if self.config["faithful_original"]:        # the release counts padding as targets (Eq. 19's loss)
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

    def advance(self, tokens: torch.Tensor, state: GenerationState,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, GenerationState]:
        """Decoder states R (Eq. 10-14) of `tokens` after what `state` has seen."""
        return advance_transformer(self.generator.transformer.decoder, tokens, state, keep)

    def token_log_probs(self, hidden: torch.Tensor, extras: dict[str, torch.Tensor],
                        training: bool = False) -> torch.Tensor:
        """Eq. 18 (copy) over the vocabulary; `training`: what the loss sees (differs only for
        `faithful_original`, whose loss never trains the copy)."""
        dist = self.generator.training_log_probs if training else self.generator.log_probs
        return dist(hidden, extras.get("copy"))

    def token_nll(self, hidden: torch.Tensor, extras: dict[str, torch.Tensor], targets: torch.Tensor,
                  training: bool = False) -> torch.Tensor:
        """-log Pr(y) of Eq. 18 at the gold tokens, without building the [N, V] distribution."""
        return self.generator.gold_nll(hidden, extras.get("copy"), targets, training)
