"""ReDial (Li et al., NeurIPS 2018): an item-based autoencoder recommender over the movies the seeker
mentioned, weighted by the seeker's sentiment, and an HRED dialogue model whose movie switch draws
movie mentions from the recommender's scores.

Recommender simplifications, stated: (1) the original autoencoder was pre-trained on MovieLens
ratings; no MovieLens data is available here, so it is trained on ReDial only; (2) the original
predicted the seeker's liked/disliked opinion with a sentiment module; here the seeker's own answers
from the dataset's questionnaire (`Conversation.item_feedback`) are used where the data has them, an
upper bound of that module; (3) it is trained with cross-entropy on the next recommended movie
(the evaluation protocol's target) instead of a rating reconstruction loss.

Conversation simplifications, stated: (4) the paper's encoder reads each turn with a pre-trained
GenSen sentence encoder; here a bidirectional GRU over word2vec-initialised embeddings (shared with
the decoder) is trained from scratch, the HRED of the paper's baseline; (5) the switch is trained
only through the NLL of the mixture P(w) = (1 - s) P_word(w) + s P_movie(w), not supervised
separately with whether the gold token is a movie; (6) P_movie is a softmax of the frozen
recommender's scores over the candidate items that have a "@<movieId>" token in the vocabulary,
computed once per context (from the same questionnaire sentiment as (2)) and not updated while the
response is generated; (7) the context is cut to the `max_context_turns` most recent turns and the
first `max_turn_tokens` tokens of each. Without movie-mention tokens (OpenDialKG) there is no switch
(s = 0): the model is a plain HRED.
"""
from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from baselines.redial_conv import HRED, SwitchState, collate_turns, mention_vocab_ids
from crsbench import register_model
from crsbench.datasets.instances import RecInstance, Sample
from crsbench.datasets.types import DatasetBundle
from crsbench.models.base import CONV, REC, Stage
from crsbench.models.conversation import ConversationModel
from crsbench.models.layers import scores_precision

LIKED, DISLIKED, UNKNOWN = 1.0, -1.0, 0.5


@register_model("redial")
class ReDialRecommender(ConversationModel):
    """ReDial: sentiment-weighted mentioned-movie vector -> autoencoder -> item scores; HRED with a
    switch between words and the recommender's movies for the responses."""

    config_file = Path(__file__).with_name("redial_rec.yaml")
    tasks = (REC, CONV)

    def __init__(self, config: dict, data: DatasetBundle) -> None:
        super().__init__(config, data)
        # the recommender (autoencoder); names kept so existing checkpoints still load
        self.encoder = nn.Linear(data.num_items, config["hidden"])
        self.decoder = nn.Linear(config["hidden"], data.num_items)
        self.dropout = nn.Dropout(config["dropout"])
        # sample -> its conversation's feedback, looked up when batching
        self._feedback = {conv.conv_id: conv.item_feedback
                          for convs in data.splits.values() for conv in convs}
        # the switch's movies: columns of the item scores and their mention tokens' vocabulary ids
        item_columns, item_vocab_ids = mention_vocab_ids(data)
        self.register_buffer("item_columns", item_columns, persistent=False)
        self.dialogue = HRED(data, config["conv"], item_vocab_ids)

    def stages(self) -> list[Stage]:
        recommender = lambda: chain(self.encoder.parameters(), self.decoder.parameters())  # noqa: E731
        return [Stage("rec", REC, self.rec_loss, recommender, validate=REC),
                Stage("conv", CONV, self.conv_loss, self.dialogue.parameters, validate=CONV)]

    # --- batching -------------------------------------------------------------------------
    def _sentiment(self, conv_id: str, item: int) -> float:
        liked = self._feedback.get(conv_id, {}).get(item, {}).get("liked")
        return LIKED if liked == 1 else DISLIKED if liked == 0 else UNKNOWN

    def _ratings(self, samples: Sequence[Sample]) -> torch.Tensor:
        """The recommender's input per sample: the sentiment of each movie its context mentions."""
        index = self.data.item_index
        ratings = torch.zeros(len(samples), self.data.num_items)
        for row, sample in enumerate(samples):
            for item in sample.context_items:
                if item in index:
                    ratings[row, index[item]] = self._sentiment(sample.conv_id, item)
        return ratings

    def collate(self, instances: Sequence[RecInstance] | Sequence[Sample], task: str) -> dict:
        if task == CONV:
            conv = self.config["conv"]
            batch = collate_turns(instances, self.data.vocab, conv["max_context_turns"],
                                  conv["max_turn_tokens"], conv["max_response_tokens"])
            return {**batch, "ratings": self._ratings(instances)}
        return {"ratings": self._ratings([inst.sample for inst in instances]),
                "target": torch.tensor([inst.target_index for inst in instances], dtype=torch.long)}

    # --- recommendation -------------------------------------------------------------------
    def _scores(self, ratings: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.sigmoid(self.encoder(ratings)))

    def recommend(self, batch: dict) -> torch.Tensor:
        return self._scores(self.dropout(batch["ratings"]))

    def rec_loss(self, batch: dict) -> torch.Tensor:
        return F.cross_entropy(self.recommend(batch), batch["target"])

    # --- conversation ---------------------------------------------------------------------
    def decode_start(self, batch: dict) -> tuple[SwitchState, int]:
        """Encode the context turns; the frozen recommender's distribution over the mentionable movies."""
        hidden = self.dialogue.start(batch)
        with torch.no_grad():             # the recommender is frozen (and without dropout) here
            scores = self._scores(batch["ratings"]).index_select(1, self.item_columns)
            item_log_probs = F.log_softmax(scores_precision(scores), dim=-1)
        return SwitchState(hidden, item_log_probs), hidden.shape[0]

    def advance(self, tokens: torch.Tensor, state: SwitchState,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, SwitchState]:
        """The GRU's outputs at every position (a GRU cannot skip positions; `keep` is not used)."""
        outputs, hidden = self.dialogue.decoder(tokens, state.hidden)
        return outputs, SwitchState(hidden, state.item_log_probs)

    def token_log_probs(self, hidden: torch.Tensor, extras: dict[str, torch.Tensor],
                        training: bool = False) -> torch.Tensor:
        """The switch's mixture (1 - s) P_word + s P_movie over the vocabulary."""
        return self.dialogue.decoder.log_probs(hidden, extras["items"])
