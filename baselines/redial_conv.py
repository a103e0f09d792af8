"""The conversation side of ReDial (Li et al., NeurIPS 2018): a hierarchical (HRED) encoder over the
context turns, a GRU decoder, and the paper's movie switch that mixes the word distribution with the
recommender's distribution over the movie-mention tokens of the vocabulary.

The model class (baselines/redial_rec.py) owns the recommender and wires it in; this module only
knows item log-probabilities as a tensor it is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from crsbench.datasets.instances import Sample
from crsbench.datasets.types import DatasetBundle, Vocabulary
from crsbench.errors import ConfigError
from crsbench.models.conversation import END_ID, PAD_ID, START_ID
from crsbench.models.layers import pad_ids, scores_precision


def collate_turns(samples: Sequence[Sample], vocab: Vocabulary, max_turns: int, max_turn_tokens: int,
                  max_response_tokens: int) -> dict[str, torch.Tensor]:
    """Context as turns [B, T, L] (the `max_turns` most recent turns, oldest first; the first
    `max_turn_tokens` tokens of each), their lengths [B, T] (0 for an empty turn or padding), the
    number of turns [B], and the decoder inputs/targets as in `collate_conversation`."""
    kept = [s.context[-max_turns:] for s in samples]
    num_turns = max((len(turns) for turns in kept), default=0)
    longest = max((min(len(t.tokens), max_turn_tokens) for turns in kept for t in turns), default=0)
    turns = torch.full((len(samples), num_turns, max(longest, 1)), PAD_ID, dtype=torch.long)
    lengths = torch.zeros(len(samples), num_turns, dtype=torch.long)
    for b, context in enumerate(kept):
        for t, turn in enumerate(context):
            ids = vocab.encode(turn.tokens[:max_turn_tokens])
            if ids:
                turns[b, t, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            lengths[b, t] = len(ids)
    responses = [vocab.encode(s.response.tokens[:max_response_tokens - 1]) + [END_ID] for s in samples]
    targets, target_mask = pad_ids(responses, pad=PAD_ID)
    inputs = torch.cat([torch.full((len(samples), 1), START_ID, dtype=torch.long), targets[:, :-1]], dim=1)
    return {"turns": turns, "turn_lengths": lengths,
            "num_turns": torch.tensor([len(c) for c in kept], dtype=torch.long),
            "response_in": inputs, "response": targets, "response_mask": target_mask}


def mention_vocab_ids(data: DatasetBundle) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate items that have a movie-mention token in the vocabulary: their indices in
    `data.items` and the vocabulary ids of their tokens (one token per item, the first in vocab order)."""
    token_of: dict[int, int] = {}
    for token, entity in data.mention_items.items():
        vid = data.vocab.index.get(token)
        column = data.item_index.get(entity)
        if vid is not None and column is not None and (column not in token_of or vid < token_of[column]):
            token_of[column] = vid
    columns = sorted(token_of)
    return (torch.tensor(columns, dtype=torch.long),
            torch.tensor([token_of[c] for c in columns], dtype=torch.long))


@dataclass
class SwitchState:
    """Decoder state for beam search: the GRU hidden state [N, H] and, per row, the log-probabilities
    of the mentionable items [N, K] (K = 0 without a switch)."""

    hidden: torch.Tensor
    item_log_probs: torch.Tensor

    def select(self, index: torch.Tensor) -> "SwitchState":
        return SwitchState(self.hidden.index_select(0, index), self.item_log_probs.index_select(0, index))

    @property
    def extras(self) -> dict[str, torch.Tensor]:
        """What the output layer needs per row (ConversationModel's name for it)."""
        return {"items": self.item_log_probs}


class HierarchicalEncoder(nn.Module):
    """HRED encoder: a bidirectional GRU reads each turn, a unidirectional GRU reads the turn vectors."""

    def __init__(self, embedding: nn.Embedding, utterance_hidden: int, context_hidden: int,
                 dropout: float) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.utterance = nn.GRU(embedding.embedding_dim, utterance_hidden, batch_first=True, bidirectional=True)
        self.context = nn.GRU(2 * utterance_hidden, context_hidden, batch_first=True)

    def forward(self, turns: torch.Tensor, lengths: torch.Tensor, num_turns: torch.Tensor) -> torch.Tensor:
        """turns [B, T, L], lengths [B, T], num_turns [B] -> the last context state [B, context_hidden]."""
        b, t, _ = turns.shape
        present = torch.arange(t, device=turns.device)[None, :] < num_turns[:, None]          # [B, T]
        rows = turns[present]                                                                # [N, L]
        row_lengths = lengths[present]
        # an empty turn is read as one padding token (a GRU cannot read zero steps), then zeroed
        packed = pack_padded_sequence(self.dropout(self.embedding(rows)), row_lengths.clamp(min=1).cpu(),
                                      batch_first=True, enforce_sorted=False)
        _, final = self.utterance(packed)                                                    # [2, N, H]
        vectors = torch.cat([final[0], final[1]], dim=-1)
        vectors = vectors.masked_fill((row_lengths == 0).unsqueeze(-1), 0.0)
        turn_vectors = vectors.new_zeros(b, t, vectors.shape[-1])
        turn_vectors[present] = vectors
        packed = pack_padded_sequence(turn_vectors, num_turns.clamp(min=1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, state = self.context(packed)                                                      # [1, B, Hc]
        return state[0]


class SwitchingDecoder(nn.Module):
    """GRU decoder over the previous token's embedding; its output distribution is ReDial's switch:
    P(w) = (1 - s) P_word(w) + s P_movie(w), s = sigmoid(w_s^T h_t + b_s) (Li et al. 2018, §4)."""

    def __init__(self, embedding: nn.Embedding, context_hidden: int, hidden: int, dropout: float,
                 item_vocab_ids: torch.Tensor) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.init = nn.Linear(context_hidden, hidden) if context_hidden != hidden else nn.Identity()
        self.gru = nn.GRU(embedding.embedding_dim, hidden, batch_first=True)
        self.output = nn.Linear(hidden, embedding.num_embeddings)
        # no movie-mention token in the vocabulary (OpenDialKG): no switch, a plain HRED decoder
        self.switch = nn.Linear(hidden, 1) if len(item_vocab_ids) else None
        self.register_buffer("item_vocab_ids", item_vocab_ids, persistent=False)

    def initial_state(self, context: torch.Tensor) -> torch.Tensor:
        """The decoder's first hidden state [B, H] from the context state."""
        return self.init(context)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [B, L] (teacher forcing or one step), hidden [B, H] -> the GRU's outputs [B, L, H]
        (after dropout: what the output layer reads) and the last hidden state [B, H]."""
        outputs, last = self.gru(self.dropout(self.embedding(tokens)), hidden.unsqueeze(0).contiguous())
        return self.dropout(outputs), last[0]

    def log_probs(self, outputs: torch.Tensor, item_log_probs: torch.Tensor) -> torch.Tensor:
        """log P [B, L, V] under the switch for GRU outputs [B, L, H] and item_log_probs [B, K]."""
        word = F.log_softmax(scores_precision(self.output(outputs)), dim=-1)
        if self.switch is None:
            return word
        gate = scores_precision(self.switch(outputs))                                # [B, L, 1]
        mixed = word + F.logsigmoid(-gate)                                                   # log (1-s) P_word
        movie = F.logsigmoid(gate) + scores_precision(item_log_probs).unsqueeze(1)  # log s P_movie
        ids = self.item_vocab_ids
        return mixed.index_copy(-1, ids, torch.logaddexp(mixed.index_select(-1, ids), movie))


class HRED(nn.Module):
    """ReDial's dialogue model: shared word2vec-initialised embeddings, hierarchical encoder,
    switching decoder."""

    def __init__(self, data: DatasetBundle, settings: dict, item_vocab_ids: torch.Tensor) -> None:
        super().__init__()
        dim = settings["dim"]
        vectors = torch.from_numpy(data.word_embeddings)
        if vectors.shape[1] != dim:
            raise ConfigError(f"model.conv.dim is {dim} but the word2vec embeddings have "
                              f"{vectors.shape[1]} dimensions",
                              hint=f"set both to one value, e.g. --set model.conv.dim="
                                   f"{vectors.shape[1]}, or --set data.word2vec_dim={dim}")
        self.embedding = nn.Embedding(len(data.vocab), dim, padding_idx=PAD_ID)
        with torch.no_grad():
            self.embedding.weight.copy_(vectors)
            self.embedding.weight[PAD_ID].zero_()
        self.encoder = HierarchicalEncoder(self.embedding, settings["utterance_hidden"],
                                           settings["context_hidden"], settings["dropout"])
        self.decoder = SwitchingDecoder(self.embedding, settings["context_hidden"], settings["decoder_hidden"],
                                        settings["dropout"], item_vocab_ids)

    def start(self, batch: dict) -> torch.Tensor:
        """The decoder's initial hidden state [B, H] after reading the context turns."""
        context = self.encoder(batch["turns"], batch["turn_lengths"], batch["num_turns"])
        return self.decoder.initial_state(context)
