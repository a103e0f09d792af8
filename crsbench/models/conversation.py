"""The conversation side shared by every Transformer-based generator (Transformer, KBRD, KGSF).

Batching of CONV samples (context tokens -> encoder, gold response -> decoder targets), the
encoder-decoder over word2vec-initialised embeddings, the token-level loss (Eq. 19: mean NLL of the
gold tokens, padding ignored), and the decoding state that beam search can reorder. A model adds
its own memories (KGSF's KG attention) and its own output distribution (KGSF's copy, KBRD's
vocabulary bias) on top.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from crsbench.datasets.instances import Sample
from crsbench.datasets.types import DatasetBundle, Vocabulary
from crsbench.errors import ConfigError
from crsbench.models.base import CRSModel
from crsbench.models.layers import pad_ids, scores_precision
from crsbench.models.transformer import (DecoderCache, Memory, TokenEmbedding, TransformerDecoder,
                                         TransformerEncoder)

PAD_ID, START_ID, END_ID, UNK_ID = Vocabulary.PAD_ID, Vocabulary.START_ID, Vocabulary.END_ID, Vocabulary.UNK_ID

#: The conversation settings these models share: listed first in their `config_file`.
CONVERSATION_CONFIG = Path(__file__).with_name("conversation.yaml")


def context_tokens(sample: Sample) -> list[str]:
    """The context as one token sequence, turns separated by the end token (oldest first)."""
    out: list[str] = []
    for turn in sample.context:
        if out:
            out.append(Vocabulary.END)
        out.extend(turn.tokens)
    return out


def collate_conversation(samples: Sequence[Sample], vocab: Vocabulary, max_context_tokens: int,
                         max_response_tokens: int) -> dict[str, torch.Tensor]:
    """Context ids/mask (most recent tokens kept), decoder inputs (start + response) and targets
    (response + end; a response longer than `max_response_tokens` is cut and keeps its end token)."""
    context, context_mask = pad_ids([vocab.encode(context_tokens(s)) for s in samples],
                                    pad=PAD_ID, max_len=max_context_tokens, keep="last")
    responses = [vocab.encode(s.response.tokens[:max_response_tokens - 1]) + [END_ID] for s in samples]
    targets, target_mask = pad_ids(responses, pad=PAD_ID)
    inputs = torch.cat([torch.full((len(samples), 1), START_ID, dtype=torch.long), targets[:, :-1]], dim=1)
    return {"context": context, "context_mask": context_mask, "response_in": inputs,
            "response": targets, "response_mask": target_mask}


def sequence_nll(log_probs: torch.Tensor, targets: torch.Tensor,
                 mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: summed NLL of the target tokens where mask is True, and their count."""
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    nll = nll.masked_fill(~mask, 0.0)
    return nll.sum(dim=1), mask.sum(dim=1)


def generation_loss(log_probs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 19: mean negative log-likelihood over the gold tokens of the batch (padding excluded)."""
    return mean_nll(*sequence_nll(log_probs, targets, mask))


def mean_nll(nll: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The batch's mean token NLL from per-sample sums and counts (Eq. 19)."""
    return nll.sum() / count.sum().clamp(min=1)


@dataclass
class GenerationState:
    """Decoder cache plus per-row tensors a model's output layer needs at every step."""

    cache: DecoderCache
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def select(self, index: torch.Tensor) -> "GenerationState":
        return GenerationState(self.cache.select(index),
                               {k: v.index_select(0, index) for k, v in self.extras.items()})


def advance_transformer(decoder: TransformerDecoder, tokens: torch.Tensor, state: GenerationState,
                        keep: torch.Tensor | None = None) -> tuple[torch.Tensor, GenerationState]:
    """`ConversationModel.advance` for a Transformer decoder: its states for `tokens`, the grown cache."""
    hidden, cache = decoder(tokens, state.cache, keep)
    return hidden, GenerationState(cache, state.extras)


def equal_norms(vectors: torch.Tensor) -> torch.Tensor:
    """Word vectors rescaled to one common norm (their mean), directions kept.

    gensim's word2vec norms grow with word frequency; tied to the output layer they give frequent
    words larger logits from the start (issue 12 §3). This removes that prior and nothing else."""
    norms = vectors.norm(dim=1, keepdim=True)
    nonzero = norms.squeeze(1) > 0
    target = norms[nonzero].mean()
    return torch.where(norms > 0, vectors * (target / norms.clamp_min(1e-12)), vectors)


class ResponseGenerator(nn.Module):
    """Transformer encoder-decoder with word2vec-initialised, tied input/output embeddings.

    `num_memories` counts the decoder's cross-attentions; the encoder output is always the last one
    (KGSF Eq. 13 attends to it after the KG memories of Eq. 11-12).
    """

    def __init__(self, data: DatasetBundle, settings: dict, num_memories: int = 1) -> None:
        super().__init__()
        dim = settings["dim"]
        vectors = torch.from_numpy(data.word_embeddings)
        if vectors.shape[1] != dim:
            raise ConfigError(f"model.conv.dim is {dim} but the word2vec embeddings have {vectors.shape[1]} "
                              "dimensions", hint=f"set both to one value, e.g. --set model.conv.dim="
                                                 f"{vectors.shape[1]}, or --set data.word2vec_dim={dim}")
        if settings["embedding_norm"] not in ("word2vec", "equal"):
            raise ConfigError(f"model.conv.embedding_norm: unknown value {settings['embedding_norm']!r}",
                              hint="use one of word2vec, equal")
        self.embedding = nn.Embedding(len(data.vocab), dim, padding_idx=PAD_ID)
        with torch.no_grad():
            self.embedding.weight.copy_(equal_norms(vectors) if settings["embedding_norm"] == "equal" else vectors)
            self.embedding.weight[PAD_ID].zero_()
        embed = TokenEmbedding(self.embedding, settings["dropout"])
        common = dict(layers=settings["layers"], heads=settings["heads"], ffn=settings["ffn"],
                      dropout=settings["dropout"], attention_dropout=settings["attention_dropout"],
                      relu_dropout=settings["relu_dropout"])
        self.encoder = TransformerEncoder(embed, **common)
        self.decoder = TransformerDecoder(embed, num_memories=num_memories, **common)

    def encode(self, batch: dict) -> Memory:
        """X (Eq. 13): the encoded context and its mask."""
        return self.encoder(batch["context"], batch["context_mask"]), batch["context_mask"]

    def vocab_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Generative logits over the vocabulary: R E^T with the tied embeddings (Pr_1 of Eq. 18)."""
        return F.linear(hidden, self.embedding.weight)


class ConversationModel(CRSModel):
    """A model that generates responses token by token: teacher forcing, the Eq. 19 loss and the
    response NLL, written once for every generator (Transformer, KBRD, KGSF, ReDial's HRED).

    A model supplies three things: `decode_start` (the state after reading the context; its
    `extras` are per-row tensors the output layer needs), `advance` (decoder states for new tokens
    given a state) and its output distribution, either as `token_logits` (a softmax over the
    vocabulary) or, for anything else, by overriding `token_log_probs` (and, for speed,
    `token_nll`). Teacher forcing, greedy/beam decoding and the losses then come from here.
    """

    # --- what a model supplies -------------------------------------------------------------
    def advance(self, tokens: torch.Tensor, state: Any,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """Decoder states [B, T, D] of `tokens` [B, T] following `state`, and the grown state.
        `keep` [B, T] (teacher forcing): the positions that will be scored; a decoder may then
        return only those, packed row-major [N, D], and skip work on the others."""
        raise NotImplementedError(f"{type(self).__name__} does not decode")

    def token_logits(self, hidden: torch.Tensor, extras: dict[str, torch.Tensor],
                     training: bool = False) -> torch.Tensor:
        """Unnormalised scores over the vocabulary [..., V] for decoder states [..., D]."""
        raise NotImplementedError(f"{type(self).__name__} defines token_log_probs instead")

    def token_log_probs(self, hidden: torch.Tensor, extras: dict[str, torch.Tensor],
                        training: bool = False) -> torch.Tensor:
        """log P(y) over the vocabulary [B, T, V] for decoder states [B, T, D]. `training`: the
        distribution the loss uses (they differ only for KGSF's `faithful_original`)."""
        return torch.log_softmax(scores_precision(self.token_logits(hidden, extras, training)), dim=-1)

    def token_nll(self, hidden: torch.Tensor, extras: dict[str, torch.Tensor], targets: torch.Tensor,
                  training: bool = False) -> torch.Tensor:
        """-log P(target) [N] for decoder states [N, D] (extras with N rows)."""
        if type(self).token_log_probs is ConversationModel.token_log_probs:    # a plain softmax
            return F.cross_entropy(scores_precision(self.token_logits(hidden, extras, training)), targets,
                                   reduction="none")
        log_probs = self.token_log_probs(hidden.unsqueeze(1), extras, training)[:, 0]
        return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    # --- what every generator gets ----------------------------------------------------------
    def decode_step(self, last_tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        hidden, state = self.advance(last_tokens, state)
        return self.token_log_probs(hidden[:, -1:], state.extras)[:, 0], state

    def decoder_states(self, batch: dict, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Teacher forcing: decoder states R [B, T, D] for the gold prefix (with `keep`: at the kept
        positions, [B, T, D] or packed [N, D]), and the state's extras."""
        state, _ = self.decode_start(batch)
        hidden, state = self.advance(batch["response_in"], state, keep)
        return hidden, state.extras

    def teacher_forced_log_probs(self, batch: dict, training: bool = False) -> torch.Tensor:
        """log P over the vocabulary at every response position [B, T, V] given the gold prefix.
        For inspection and tests: the losses below score the gold positions only."""
        hidden, extras = self.decoder_states(batch)
        return self.token_log_probs(hidden, extras, training)

    def gold_nll(self, batch: dict, mask: torch.Tensor, training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: the summed NLL of the gold tokens where `mask` is True, and their count.

        Only those positions reach the output layer (the projection onto the vocabulary dominates
        a step, and ~60 % of a ReDial batch's response positions are padding), and a Transformer
        decoder's linear maps skip the positions after each row's last one. Same values as scoring
        every position and masking.
        """
        hidden, extras = self.decoder_states(batch, keep=mask)
        rows, cols = mask.nonzero(as_tuple=True)
        if hidden.dim() == 3:
            hidden = hidden[rows, cols]
        nll = self.token_nll(hidden, {k: v[rows] for k, v in extras.items()},
                             batch["response"][rows, cols], training)
        per_sample = torch.zeros(mask.shape[0], dtype=nll.dtype, device=nll.device).index_add_(0, rows, nll)
        return per_sample, mask.sum(dim=1)

    def conv_loss(self, batch: dict) -> torch.Tensor:
        """Eq. 19: the batch's mean NLL over its gold response tokens (`response_mask`)."""
        return mean_nll(*self.gold_nll(batch, batch["response_mask"], training=True))

    def response_nll(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Gold-token NLL under the decoding distribution; padding is never counted here."""
        return self.gold_nll(batch, batch["response"] != PAD_ID)
