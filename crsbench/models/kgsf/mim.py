"""KGSF §4.2: KG fusion via Mutual Information Maximisation (Eq. 3-6)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crsbench.models.layers import AttentionPooling


class MutualInformationMaximization(nn.Module):
    """Aligns the word and entity semantic spaces.

    The context's words are pooled into a "super token" v~ by self-attention (Eq. 6); every
    entity e gets g(e, w~) = sigma(n_e^T T v~) (Eq. 5). Entities that co-occur in the conversation
    are positives, every other entity a negative (Eq. 4's random pairs, taken exhaustively). Eq. 4
    bounds MI by E_P[g] - E_N[g], an expectation over each side, so the loss is the binary
    cross-entropy averaged over the positives plus averaged over the negatives. (Summing over all
    64k entities instead lets the negatives outweigh the few positives ~10,000:1 and, as the
    Eq. 9 regulariser, pushes every candidate item away from the context: on the shared ReDial
    data that made KGSF worse than KGSF -MIM; see BENCHMARKS.md.)
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.super_token = AttentionPooling(dim)               # Eq. 6
        self.transform = nn.Linear(dim, dim, bias=False)        # T in Eq. 5
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, word_reps: torch.Tensor, entity_reps: torch.Tensor, words: torch.Tensor,
                words_mask: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """MIM loss; `positives` is a [B, num_entities] 0/1 matrix of co-occurring entities."""
        v = self.super_token(word_reps[words], words_mask)                     # [B, D]
        logits = self.transform(v) @ entity_reps.t() + self.bias               # n_e^T T v~
        negatives = 1.0 - positives
        positive_term = (F.softplus(-logits) * positives).sum(-1) / positives.sum(-1).clamp(min=1)
        negative_term = (F.softplus(logits) * negatives).sum(-1) / negatives.sum(-1).clamp(min=1)
        loss = positive_term + negative_term                       # -log sigma(g) on P, -log(1 - sigma) on N
        # no words means no super token, and no positive entity means nothing to align
        valid = words_mask.any(dim=1) & (positives.sum(-1) > 0)
        return (loss * valid).sum() / valid.sum().clamp(min=1)


class ReleaseMIM(nn.Module):
    """MIM as the KGSF release computes it (`mim_form: release`; model.py `infomax_loss`): the
    recommender's own word pooling v(C) (Eq. 6, passed in, so pre-training trains what recommendation
    then uses), a linear map with bias, scores over *all* entities with a per-entity bias, and a
    squared error against the 0/1 labels (the movies of the context's last 5 turns), summed over the
    entities, zeroed for contexts without entities and averaged over the batch."""

    def __init__(self, dim: int, num_entities: int) -> None:
        super().__init__()
        self.transform = nn.Linear(dim, dim)                    # info_con_norm
        self.entity_bias = nn.Parameter(torch.empty(num_entities).uniform_(-dim ** -0.5, dim ** -0.5))

    def forward(self, pooled_words: torch.Tensor, entity_reps: torch.Tensor, labels: torch.Tensor,
                has_entities: torch.Tensor) -> torch.Tensor:
        """pooled_words [B, D] (v(C)), labels [B, num_entities] 0/1, has_entities [B] bool."""
        scores = F.linear(self.transform(pooled_words), entity_reps, self.entity_bias)
        per_sample = ((scores - labels) ** 2).sum(dim=-1) * has_entities
        return per_sample.mean()
