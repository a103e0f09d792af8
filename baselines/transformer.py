"""Transformer baseline (Vaswani et al. 2017) as KGSF's Table 3 uses it: an encoder-decoder over the
context text that generates the response with no recommender or knowledge-graph information."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from crsbench import register_model
from crsbench.datasets.instances import Sample
from crsbench.datasets.types import DatasetBundle
from crsbench.models.base import CONV, Stage
from crsbench.models.conversation import (CONVERSATION_CONFIG, ConversationModel, GenerationState, ResponseGenerator,
                                          advance_transformer, collate_conversation)


@register_model("transformer")
class Transformer(ConversationModel):
    """Encoder-decoder Transformer (2 layers, 2 heads, 300-d, FFN 300, word2vec embeddings)."""

    config_file = (CONVERSATION_CONFIG, Path(__file__).with_name("transformer.yaml"))
    tasks = (CONV,)

    def __init__(self, config: dict, data: DatasetBundle) -> None:
        super().__init__(config, data)
        self.generator = ResponseGenerator(data, config["conv"])

    def stages(self) -> list[Stage]:
        return [Stage("conv", CONV, self.conv_loss, self.parameters, validate=CONV)]

    def collate(self, samples: Sequence[Sample], task: str) -> dict:
        conv = self.config["conv"]
        return collate_conversation(samples, self.data.vocab, conv["max_context_tokens"],
                                    conv["max_response_tokens"])

    def decode_start(self, batch: dict) -> tuple[GenerationState, int]:
        cache = self.generator.decoder.start([self.generator.encode(batch)])
        return GenerationState(cache), batch["context"].shape[0]

    def advance(self, tokens: torch.Tensor, state: GenerationState,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, GenerationState]:
        return advance_transformer(self.generator.decoder, tokens, state, keep)

    def token_logits(self, hidden: torch.Tensor, extras: dict[str, torch.Tensor],
                     training: bool = False) -> torch.Tensor:
        """Vocabulary logits R E^T with the tied embeddings."""
        return self.generator.vocab_logits(hidden)
