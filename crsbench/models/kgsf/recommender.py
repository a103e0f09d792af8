"""KGSF §4.3: the KG-enhanced recommender (Eq. 6-8)."""
from __future__ import annotations

import torch
from torch import nn

from crsbench.models.layers import AttentionPooling


class KGRecommender(nn.Module):
    """User preference from the context's KG-encoded words and entities, then item scores.

    v(C), n(C): self-attentive pooling of the context words / entities (Eq. 6);
    p_u = beta * v(C) + (1 - beta) * n(C), beta = sigma(W_gate [v(C); n(C)]) (Eq. 7);
    Pr_rec(i) = softmax(p_u^T n_i) over the candidate items (Eq. 8), plus a per-item bias as in the
    original code (`item_bias`).
    """

    def __init__(self, dim: int, num_items: int, item_bias: bool) -> None:
        super().__init__()
        self.word_pooling = AttentionPooling(dim)
        self.entity_pooling = AttentionPooling(dim)
        self.gate = nn.Linear(2 * dim, 1)                       # W_gate
        self.item_bias = nn.Parameter(torch.zeros(num_items)) if item_bias else None

    def user_representation(self, word_reps: torch.Tensor, entity_reps: torch.Tensor,
                            words: torch.Tensor, words_mask: torch.Tensor, entities: torch.Tensor,
                            entities_mask: torch.Tensor) -> torch.Tensor:
        """p_u [B, D] (Eq. 7)."""
        n_c = self.entity_pooling(entity_reps[entities], entities_mask)
        v_c = self.word_pooling(word_reps[words], words_mask)
        beta = torch.sigmoid(self.gate(torch.cat([v_c, n_c], dim=-1)))
        return beta * v_c + (1 - beta) * n_c

    def attention(self, word_reps: torch.Tensor, entity_reps: torch.Tensor, words: torch.Tensor,
                  words_mask: torch.Tensor, entities: torch.Tensor, entities_mask: torch.Tensor) -> dict:
        """What the user representation attends to: alpha over the context words and entities
        (Eq. 6) and the gate beta (Eq. 7), with p_u rebuilt from them (equal to user_representation)."""
        word_vectors, entity_vectors = word_reps[words], entity_reps[entities]
        word_alpha = self.word_pooling.weights(word_vectors, words_mask)
        entity_alpha = self.entity_pooling.weights(entity_vectors, entities_mask)
        v_c = torch.bmm(word_alpha.unsqueeze(1), word_vectors).squeeze(1)
        n_c = torch.bmm(entity_alpha.unsqueeze(1), entity_vectors).squeeze(1)
        beta = torch.sigmoid(self.gate(torch.cat([v_c, n_c], dim=-1)))
        return {"words": word_alpha, "entities": entity_alpha, "gate": beta.squeeze(-1),
                "user": beta * v_c + (1 - beta) * n_c}

    def item_scores(self, user: torch.Tensor, item_reps: torch.Tensor) -> torch.Tensor:
        """Logits of Eq. 8 over the candidate items [B, num_items]."""
        scores = user @ item_reps.t()
        return scores + self.item_bias if self.item_bias is not None else scores
