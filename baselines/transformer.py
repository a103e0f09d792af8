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
from crsbench.models.conversation import (CONVERSATION_CONFIG, GenerationState, ResponseGenerator, collate_conversation,
                                          mean_nll, packed_nll)


@register_model("transformer")
class Transformer(CRSModel):
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

    def _decoder_states(self, batch: dict) -> torch.Tensor:
        state, _ = self.decode_start(batch)
        return self.generator.decoder(batch["response_in"], state.cache)[0]

    def _log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.generator.vocab_logits(hidden).float(), dim=-1)

    def teacher_forced_log_probs(self, batch: dict) -> torch.Tensor:
        """log P [B, T, V] at every response position given the gold prefix."""
        return self._log_probs(self._decoder_states(batch))

    def _teacher_forced(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample NLL and count of the gold response tokens (only those are scored)."""
        return packed_nll(self._decoder_states(batch), {}, batch["response"], batch["response_mask"],
                          lambda h, _: self._log_probs(h))

    def conv_loss(self, batch: dict) -> torch.Tensor:
        return mean_nll(*self._teacher_forced(batch))

    def response_nll(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self._teacher_forced(batch)

    def decode_start(self, batch: dict) -> tuple[GenerationState, int]:
        cache = self.generator.decoder.start([self.generator.encode(batch)])
        return GenerationState(cache), batch["context"].shape[0]

    def decode_step(self, last_tokens: torch.Tensor, state: GenerationState) -> tuple[torch.Tensor, GenerationState]:
        hidden, cache = self.generator.decoder(last_tokens, state.cache)
        return self._log_probs(hidden[:, -1]), GenerationState(cache, state.extras)
