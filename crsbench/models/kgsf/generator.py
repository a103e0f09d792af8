"""KGSF §4.4: the KG-enhanced response generator (Eq. 10-19).

Decoder layer (Eq. 10-14): self-attention -> attention over the context's ConceptNet word
representations V^(C) (Eq. 11) -> over its DBpedia entity representations N^(C) (Eq. 12) -> over the
encoder output X (Eq. 13) -> FFN. With `kg_decoder: false` ("-KG-D", Figure 3) only Eq. 10, 13, 14
remain.

Copy (Eq. 18): Pr(y) = Pr_1(y | R) + Pr_2(y | R, G_1, G_2). Pr_1 scores the whole vocabulary from
the decoder state R (tied embeddings); Pr_2 scores only the tokens that are nodes of the two KGs
(ConceptNet words and movie items) from R and the user's KG vectors v(C), n(C), as the original
code does. Both score sets share one softmax normaliser, as in the standard copy mechanism the paper
cites (Gu et al. 2016), so Pr_1 + Pr_2 is a distribution and the loss (Eq. 19) trains both.

`faithful_original: true` reproduces the original release instead: decoding adds the copy logits
to the generative logits, but the loss sees only the generative logits (the copy branch never
trains) and counts padding positions as targets (the release's model.py, RUCAIBox/KGSF).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crsbench.datasets.types import DatasetBundle
from crsbench.models.conversation import ResponseGenerator
from crsbench.models.layers import scores_precision
from crsbench.models.transformer import Memory


def copyable_tokens(data: DatasetBundle) -> torch.Tensor:
    """A bool [vocab] mask of the tokens that are KG nodes: ConceptNet words and movie items."""
    mask = torch.zeros(len(data.vocab), dtype=torch.bool)
    for name in list(data.word_kg.node_names) + list(data.mention_items):
        index = data.vocab.index.get(name)
        if index is not None:
            mask[index] = True
    return mask


class KGEnhancedGenerator(nn.Module):
    """Transformer encoder + KG-enhanced decoder + copy over KG nodes (Θ^d in Algorithm 1)."""

    def __init__(self, data: DatasetBundle, kg_dim: int, settings: dict, kg_decoder: bool,
                 copy: bool, faithful_original: bool) -> None:
        super().__init__()
        dim = settings["dim"]
        self.kg_decoder, self.faithful_original = kg_decoder, faithful_original
        self.transformer = ResponseGenerator(data, settings, num_memories=3 if kg_decoder else 1)
        if kg_decoder:      # V^(C), N^(C) live in the KG space (128-d); the decoder works in 300-d
            self.word_memory = nn.Linear(kg_dim, dim)
            self.entity_memory = nn.Linear(kg_dim, dim)
        self.copy = copy
        if copy:
            self.user_word = nn.Linear(kg_dim, dim)        # v(C) into the decoder space
            self.user_entity = nn.Linear(kg_dim, dim)      # n(C) into the decoder space
            self.copy_hidden = nn.Linear(3 * dim, dim)
            self.copy_output = nn.Linear(dim, len(data.vocab))
            self.set_copyable(copyable_tokens(data))

    def set_copyable(self, mask: torch.Tensor) -> None:
        """Which tokens Pr_2 scores (a bool [vocab] mask): only those rows of copy_output are used.
        Kept as their vocabulary ids, and each vocabulary id's column among them (-1: none)."""
        ids = mask.nonzero().squeeze(1).to(self.copy_output.weight.device)
        column = torch.full((mask.numel(),), -1, dtype=torch.long, device=ids.device)
        column[ids] = torch.arange(len(ids), device=ids.device)
        self.register_buffer("copy_ids", ids, persistent=False)
        self.register_buffer("copy_column", column, persistent=False)

    def memories(self, batch: dict, word_reps: torch.Tensor, entity_reps: torch.Tensor) -> list[Memory]:
        """The decoder's memories in Eq. 11-13 order: V^(C), N^(C), X."""
        context = self.transformer.encode(batch)
        if not self.kg_decoder:
            return [context]
        words = self.word_memory(word_reps[batch["words"]])
        entities = self.entity_memory(entity_reps[batch["entities"]])
        return [(words, batch["words_mask"]), (entities, batch["entities_mask"]), context]

    def copy_features(self, user_words: torch.Tensor, user_entities: torch.Tensor) -> torch.Tensor:
        """[B, 2*dim]: the user's pooled word and entity vectors, projected (fixed during decoding)."""
        return torch.cat([self.user_word(user_words), self.user_entity(user_entities)], dim=-1)

    def _copy_logits(self, hidden: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Pr_2's scores [..., K] of the K copyable tokens (`copy_ids`) for decoder states [..., D]."""
        features = features.unsqueeze(-2).expand(*hidden.shape[:-1], -1) if hidden.dim() == 3 else features
        mixed = self.copy_hidden(torch.cat([features, hidden], dim=-1))
        return F.linear(mixed, self.copy_output.weight.index_select(0, self.copy_ids),
                        self.copy_output.bias.index_select(0, self.copy_ids))

    def log_probs(self, hidden: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """log Pr(y_i | y_<i) over the vocabulary for decoder states R [B, T, D] (Eq. 18)."""
        generative = scores_precision(self.transformer.vocab_logits(hidden))
        if not self.copy:
            return torch.log_softmax(generative, dim=-1)
        copy = scores_precision(self._copy_logits(hidden, features))
        ids = self.copy_ids
        if self.faithful_original:            # the release adds the copy logits to the logits
            return torch.log_softmax(generative.index_add(-1, ids, copy), dim=-1)
        normaliser = torch.logsumexp(torch.cat([generative, copy], dim=-1), dim=-1, keepdim=True)
        joint = generative.index_copy(-1, ids, torch.logaddexp(generative.index_select(-1, ids), copy))
        return joint - normaliser                                      # log (exp(g_y) + exp(c_y)) / Z

    def training_log_probs(self, hidden: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """What the loss sees: the full distribution, or (faithful_original) the generative part only."""
        if self.faithful_original:
            return torch.log_softmax(scores_precision(self.transformer.vocab_logits(hidden)), dim=-1)
        return self.log_probs(hidden, features)

    def gold_nll(self, hidden: torch.Tensor, features: torch.Tensor | None, targets: torch.Tensor,
                 training: bool) -> torch.Tensor:
        """-log Pr(y) [N] of the targets [N] for decoder states [N, D]: Eq. 18 without the [N, V]
        distribution. Pr(y) = (exp(g_y) + exp(c_y)) / Z with Z summing both score sets, so
        -log Pr(y) = cross_entropy([g, c], y) - softplus(c_y - g_y) (0 when y is not copyable)."""
        generative = scores_precision(self.transformer.vocab_logits(hidden))
        if not self.copy or (training and self.faithful_original):
            return F.cross_entropy(generative, targets, reduction="none")
        copy = scores_precision(self._copy_logits(hidden, features))
        if self.faithful_original:
            return F.cross_entropy(generative.index_add(-1, self.copy_ids, copy), targets, reduction="none")
        nll = F.cross_entropy(torch.cat([generative, copy], dim=-1), targets, reduction="none")
        if not len(self.copy_ids):
            return nll
        column = self.copy_column[targets]
        copyable = column >= 0
        gold_copy = copy.gather(-1, column.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        gold_generative = generative.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return nll - torch.where(copyable, F.softplus(gold_copy - gold_generative), torch.zeros_like(nll))
