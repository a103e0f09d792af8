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
    are positives, every other entity a negative (Eq. 4's random pairs, taken exhaustively), and
    the bound is maximised as a binary cross-entropy, summed over entities and averaged over the
    batch (the original code also sums over entities).
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
        loss = F.binary_cross_entropy_with_logits(logits, positives, reduction="none").sum(-1)
        has_words = words_mask.any(dim=1)           # no words: no super token, nothing to align
        return (loss * has_words).sum() / has_words.sum().clamp(min=1)
