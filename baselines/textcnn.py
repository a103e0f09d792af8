"""TextCNN recommender (Kim, EMNLP 2014), the text-only baseline of KGSF's Table 2.

The context's recent tokens (movie mentions included, as words) are embedded (word2vec initial
embeddings), convolved with filters of several widths, max-pooled over time and mapped to a
score per candidate item.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from crsbench import register_model
from crsbench.datasets.instances import RecInstance
from crsbench.datasets.types import DatasetBundle
from crsbench.models.base import REC, CRSModel, Stage
from crsbench.models.layers import pad_ids


@register_model("textcnn")
class TextCNN(CRSModel):
    """TextCNN: convolutions over the context text -> user vector -> item scores."""

    config_file = Path(__file__).with_name("textcnn.yaml")
    tasks = (REC,)

    def __init__(self, config: dict, data: DatasetBundle) -> None:
        super().__init__(config, data)
        # a copy: from_pretrained keeps the tensor it gets, and training would write into the dataset
        emb = torch.from_numpy(data.word_embeddings).clone()
        self.embedding = nn.Embedding.from_pretrained(emb, freeze=False, padding_idx=0)
        widths, channels = config["filter_widths"], config["channels"]
        self.convs = nn.ModuleList(nn.Conv1d(emb.shape[1], channels, w) for w in widths)
        self.dropout = nn.Dropout(config["dropout"])
        self.output = nn.Linear(channels * len(widths), data.num_items)

    def stages(self) -> list[Stage]:
        return [Stage("rec", REC, self.rec_loss, self.parameters, validate=REC)]

    def collate(self, instances: Sequence[RecInstance], task: str) -> dict:
        vocab, width = self.data.vocab, max(self.config["filter_widths"])
        contexts = []
        for inst in instances:
            tokens = [t for turn in inst.sample.context for t in turn.tokens]
            ids = vocab.encode(tokens)[-self.config["max_context_tokens"]:]
            contexts.append(ids + [0] * max(0, width - len(ids)))      # at least one window
        tokens, mask = pad_ids(contexts)
        return {"tokens": tokens, "lengths": mask.sum(dim=1),
                "target": torch.tensor([inst.target_index for inst in instances], dtype=torch.long)}

    def recommend(self, batch: dict) -> torch.Tensor:
        x = self.embedding(batch["tokens"]).transpose(1, 2)                  # [B, E, L]
        pooled = []
        for conv in self.convs:
            features = F.relu(conv(x))                                       # [B, C, L - w + 1]
            # windows that reach into the batch's padding score 0 (<= every real window after the
            # ReLU), so a context's vector does not depend on the other contexts of its batch
            windows = torch.arange(features.shape[2], device=x.device)
            real = windows[None, :] + conv.kernel_size[0] <= batch["lengths"][:, None]
            pooled.append((features * real[:, None, :]).max(dim=2).values)
        return self.output(self.dropout(torch.cat(pooled, dim=1)))

    def rec_loss(self, batch: dict) -> torch.Tensor:
        return F.cross_entropy(self.recommend(batch), batch["target"])
