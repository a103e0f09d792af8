"""Transformer baseline (Vaswani et al. 2017) as KGSF's Table 3 uses it: an encoder-decoder over the
context text that generates the response with no recommender or knowledge-graph information."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from crsbench import register_model
from crsbench.datasets.instances import Sample
from crsbench.datasets.types import DatasetBundle
from crsbench.models.base import CONV, CRSModel, Stage
from crsbench.models.conversation import (GenerationState, ResponseGenerator, collate_conversation,
                                          generation_loss, sequence_nll)


@register_model("transformer")
class Transformer(CRSModel):
    """Encoder-decoder Transformer (2 layers, 2 heads, 300-d, FFN 300, word2vec embeddings)."""

    config_file = Path(__file__).with_name("transformer.yaml")
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

    def _log_probs(self, batch: dict) -> torch.Tensor:
        state, _ = self.decode_start(batch)
        hidden, _ = self.generator.decoder(batch["response_in"], state.cache)
        return torch.log_softmax(self.generator.vocab_logits(hidden).float(), dim=-1)

    def conv_loss(self, batch: dict) -> torch.Tensor:
        return generation_loss(self._log_probs(batch), batch["response"], batch["response_mask"])

    def response_nll(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return sequence_nll(self._log_probs(batch), batch["response"], batch["response_mask"])

    def decode_start(self, batch: dict) -> tuple[GenerationState, int]:
        cache = self.generator.decoder.start([self.generator.encode(batch)])
        return GenerationState(cache), batch["context"].shape[0]

    def decode_step(self, last_tokens: torch.Tensor, state: GenerationState) -> tuple[torch.Tensor, GenerationState]:
        hidden, cache = self.generator.decoder(last_tokens, state.cache)
        logits = self.generator.vocab_logits(hidden[:, -1]).float()
        return torch.log_softmax(logits, dim=-1), GenerationState(cache, state.extras)
