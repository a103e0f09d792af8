"""Building blocks shared by several models: written once, used by KGSF, KBRD and the baselines."""
from __future__ import annotations

import torch
from torch import nn


class AttentionPooling(nn.Module):
    """Self-attentive pooling of a set of vectors into one (KGSF Eq. 6, also KBRD's user encoder).

    alpha = softmax(b^T tanh(W_a V)), pooled = V alpha. Padded positions are masked out; a set with
    no valid element pools to the zero vector (a defined value, never NaN).
    """

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.proj = nn.Linear(dim, hidden, bias=False)     # W_a
        self.score = nn.Linear(hidden, 1, bias=False)      # b
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.xavier_uniform_(self.score.weight)

    def weights(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """alpha [B, L]: the attention over each set (0 on padding; sums to 1 where a set is not empty)."""
        logits = self.score(torch.tanh(self.proj(vectors))).squeeze(-1)       # [B, L]
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        return torch.softmax(logits, dim=-1) * mask                           # all-masked rows -> 0

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """vectors [B, L, D], mask [B, L] (True = valid) -> [B, D]."""
        if vectors.shape[1] == 0:
            return vectors.new_zeros(vectors.shape[0], vectors.shape[2])
        return torch.bmm(self.weights(vectors, mask).unsqueeze(1), vectors).squeeze(1)


def pad_ids(sequences: list[list[int]], pad: int = 0, max_len: int | None = None,
            keep: str = "last") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists into a LongTensor [B, L] and a bool mask; `keep` which end survives truncation."""
    if max_len is not None:
        sequences = [s[-max_len:] if keep == "last" else s[:max_len] for s in sequences]
    length = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), length), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, :len(seq)] = True
    return ids, mask


def scores_precision(x: torch.Tensor) -> torch.Tensor:
    """Half-precision scores (autocast) upcast to float32 before a softmax; float32/64 kept as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
