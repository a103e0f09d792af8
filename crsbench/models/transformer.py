"""Transformer building blocks shared by every generating model (Transformer, KBRD, KGSF).

The layout follows the Transformer KGSF builds on (ParlAI's): post-norm residual blocks, learned
token embeddings scaled by sqrt(dim), sinusoidal positions. A decoder layer is self-attention, then
one cross-attention per *memory* in a fixed order, then the FFN. A plain decoder has one memory (the
encoder output); KGSF's KG-enhanced decoder (Eq. 10-14) has three: ConceptNet words, DBpedia
entities, then the encoder output.

Decoding is incremental: `DecoderCache` keeps each layer's self-attention keys/values and the
projected memories, so one step costs O(length) instead of re-running the whole prefix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

Memory = tuple[torch.Tensor, torch.Tensor]      # (vectors [B, L, D], mask [B, L], True = valid)


def _attention_mask(mask: torch.Tensor | None, query_len: int, causal_from: int | None,
                    device: torch.device | None = None) -> torch.Tensor | None:
    """A bool [B, 1, Lq, Lk] mask (True = attend) from a key mask [B, Lk] and/or causality.

    `causal_from`: position of the first query among the keys (queries attend to keys <= their own
    position); None for no causal restriction. `device`: where a causal-only mask is built.
    """
    if mask is None and causal_from is None:
        return None
    out = None
    if mask is not None:
        out = mask[:, None, None, :]
    if causal_from is not None:
        key_len = mask.shape[1] if mask is not None else causal_from + query_len
        q_pos = torch.arange(query_len, device=(mask.device if mask is not None else device)) + causal_from
        k_pos = torch.arange(key_len, device=q_pos.device)
        causal = (k_pos[None, :] <= q_pos[:, None])[None, None]
        out = causal if out is None else out & causal
    return out


def _guard_empty(mask: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A bool attention mask [B, 1, Lq|1, Lk] whose all-masked rows attend everywhere (SDPA would
    give NaN), and those rows [B, 1, Lq|1, 1], to be zeroed after attending; built once per memory."""
    if mask is None:
        return None, None
    empty = ~mask.any(dim=-1, keepdim=True)
    return mask | empty, empty


class MultiHeadAttention(nn.Module):
    """MHA(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    (KGSF Eq. 15-16). A query whose keys are all masked gets a zero vector, never NaN.

    The projections are exposed separately so a decoder can project keys/values once per memory,
    run the linear maps on a batch's real positions only, and attend in the padded [B, H, L, dh] layout.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        for lin in (self.q, self.k, self.v, self.out):
            nn.init.xavier_normal_(lin.weight)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, D] -> [B, H, L, dh]."""
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, H, L, dh] -> [B, L, D]."""
        b, h, n, dh = x.shape
        return x.transpose(1, 2).reshape(b, n, h * dh)

    def project_kv(self, memory: torch.Tensor) -> torch.Tensor:
        """K and V of memory vectors [..., D] in one matrix product: [..., 2D]."""
        return F.linear(memory, torch.cat([self.k.weight, self.v.weight]), torch.cat([self.k.bias, self.v.bias]))

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """Q, K and V of the same vectors [..., D] in one matrix product: [..., 3D]."""
        return F.linear(x, torch.cat([self.q.weight, self.k.weight, self.v.weight]),
                        torch.cat([self.q.bias, self.k.bias, self.v.bias]))

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, H, L, dh] of a memory [B, L, D], computed once per decoding."""
        keys, values = self.project_kv(memory).chunk(2, dim=-1)
        return self.split(keys), self.split(values)

    def attend_heads(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     guarded: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
                     causal: bool = False) -> torch.Tensor:
        """Projected queries [B, H, Lq, dh] against keys/values [B, H, Lk, dh] -> [B, H, Lq, dh].
        `guarded`: `_guard_empty` of the mask; `causal`: queries and keys are the same positions."""
        mask, empty = guarded
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal and mask is None,
                                             dropout_p=self.dropout if self.training else 0.0)
        return out if empty is None else out.masked_fill(empty, 0.0)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """query [B, Lq, D] attends to memory [B, Lk, D]; mask [B, 1, Lq|1, Lk] (True = attend)."""
        if query is memory:
            q, keys, values = (self.split(t) for t in self.project_qkv(query).chunk(3, dim=-1))
        else:
            q = self.split(self.q(query))
            keys, values = self.project_memory(memory)
        return self.out(self.merge(self.attend_heads(q, keys, values, _guard_empty(mask))))


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2 (KGSF Eq. 17)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        nn.init.xavier_uniform_(self.lin1.weight)
        nn.init.xavier_uniform_(self.lin2.weight)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.dropout(F.relu(self.lin1(x))))


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """Fixed sine/cosine position embeddings [length, dim] (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


class TokenEmbedding(nn.Module):
    """Token embeddings * sqrt(dim) + sinusoidal positions, then dropout (shared by encoder/decoder)."""

    def __init__(self, embedding: nn.Embedding, dropout: float, max_positions: int = 1024) -> None:
        super().__init__()
        self.embedding = embedding
        self.scale = math.sqrt(embedding.embedding_dim)
        self.register_buffer("positions", sinusoidal_positions(max_positions, embedding.embedding_dim),
                             persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        if start + ids.shape[1] > self.positions.shape[0]:
            raise ValueError(f"sequence of {start + ids.shape[1]} tokens is longer than the "
                             f"{self.positions.shape[0]} positions")
        x = self.embedding(ids) * self.scale + self.positions[start:start + ids.shape[1]]
        return self.dropout(x)


class EncoderLayer(nn.Module):
    """Self-attention then FFN, each with dropout, residual and layer norm (post-norm)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, attention_dropout: float,
                 relu_dropout: float) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads, attention_dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn, relu_dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, _attention_mask(mask, x.shape[1], None))))
        return self.norm2(x + self.dropout(self.ffn(x)))


class TransformerEncoder(nn.Module):
    """The standard Transformer encoder over the context tokens: X in KGSF Eq. 13."""

    def __init__(self, embed: TokenEmbedding, layers: int, heads: int, ffn: int, dropout: float,
                 attention_dropout: float = 0.0, relu_dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = embed
        dim = embed.embedding.embedding_dim
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, ffn, dropout, attention_dropout, relu_dropout)
                                    for _ in range(layers))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask [B, L] -> [B, L, D] (padded positions zeroed)."""
        x = self.embed(ids) * mask.unsqueeze(-1)
        for layer in self.layers:
            x = layer(x, mask) * mask.unsqueeze(-1)
        return x


@dataclass
class DecoderCache:
    """What incremental decoding keeps between steps; `select` reorders it for beam search."""

    position: int = 0
    self_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)   # per layer
    memory_kv: list[list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=list)  # per layer, memory
    memory_masks: list[torch.Tensor] = field(default_factory=list)                           # per memory

    def select(self, index: torch.Tensor) -> "DecoderCache":
        """Keep (and repeat) batch rows `index` of everything cached."""
        pick = lambda t: t.index_select(0, index)          # noqa: E731
        return DecoderCache(
            self.position,
            [None if kv is None else (pick(kv[0]), pick(kv[1])) for kv in self.self_kv],
            [[(pick(k), pick(v)) for k, v in layer] for layer in self.memory_kv],
            [pick(m) for m in self.memory_masks])


@dataclass
class Positions:
    """Which positions of a [B, T] layout a decoder computes: all (rows is None), or a packed
    row-major list (rows, cols). Linear maps run on the packed [N, D] vectors; attention runs in
    the padded layout, where the skipped positions are zeros that no kept query can see."""

    batch: int
    length: int
    rows: torch.Tensor | None = None
    cols: torch.Tensor | None = None

    @classmethod
    def prefixes_of(cls, keep: torch.Tensor) -> "Positions":
        """Every position up to each row's last kept one (a later position attends to the earlier)."""
        b, t = keep.shape
        last = torch.where(keep, torch.arange(1, t + 1, device=keep.device), 0).amax(dim=1)
        rows, cols = (torch.arange(t, device=keep.device)[None, :] < last[:, None]).nonzero(as_tuple=True)
        return cls(b, t, rows, cols)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, ...] -> [N, ...]."""
        return x.reshape(self.batch * self.length, *x.shape[2:]) if self.rows is None else x[self.rows, self.cols]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """[N, ...] -> [B, T, ...] with zeros at the positions not computed."""
        if self.rows is None:
            return x.view(self.batch, self.length, *x.shape[1:])
        out = x.new_zeros(self.batch, self.length, *x.shape[1:])
        return out.index_put((self.rows, self.cols), x)


class DecoderLayer(nn.Module):
    """Self-attention (Eq. 10) -> one cross-attention per memory, in order (Eq. 11-13) -> FFN (Eq. 14).

    Every sub-layer has dropout, a residual connection and layer norm.
    """

    def __init__(self, dim: int, heads: int, ffn: int, num_memories: int, dropout: float,
                 attention_dropout: float, relu_dropout: float) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(dim, heads, attention_dropout)
        self.self_norm = nn.LayerNorm(dim)
        self.cross = nn.ModuleList(MultiHeadAttention(dim, heads, attention_dropout) for _ in range(num_memories))
        self.cross_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_memories))
        self.ffn = FeedForward(dim, ffn, relu_dropout)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, where: Positions, self_kv: tuple[torch.Tensor, torch.Tensor] | None,
                memory_kv: list[tuple[torch.Tensor, torch.Tensor]],
                memory_masks: list[tuple[torch.Tensor | None, torch.Tensor | None]],
                position: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [N, D]: the new positions `position..position+T-1` at `where`; returns them and the
        grown self-attention keys/values [B, H, position+T, dh]."""
        attention = self.self_attention
        q, k, v = (attention.split(where.pad(t)) for t in attention.project_qkv(x).chunk(3, dim=-1))
        if self_kv is not None:
            k, v = torch.cat([self_kv[0], k], dim=2), torch.cat([self_kv[1], v], dim=2)
        causal = (_guard_empty(_attention_mask(None, where.length, position, x.device))
                  if position and where.length > 1 else (None, None))
        attended = attention.attend_heads(q, k, v, causal, causal=where.length > 1)
        x = self.self_norm(x + self.dropout(attention.out(where.pack(attention.merge(attended)))))
        for cross, norm, (mk, mv), guarded in zip(self.cross, self.cross_norms, memory_kv, memory_masks):
            q = cross.split(where.pad(cross.q(x)))
            attended = cross.out(where.pack(cross.merge(cross.attend_heads(q, mk, mv, guarded))))
            x = norm(x + self.dropout(attended))
        return self.ffn_norm(x + self.dropout(self.ffn(x))), (k, v)


class TransformerDecoder(nn.Module):
    """A Transformer decoder attending to `num_memories` memories; trains on whole sequences and
    decodes step by step with a `DecoderCache` (same function, checked by tests)."""

    def __init__(self, embed: TokenEmbedding, layers: int, heads: int, ffn: int, num_memories: int,
                 dropout: float, attention_dropout: float = 0.0, relu_dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = embed
        self.num_memories = num_memories
        dim = embed.embedding.embedding_dim
        self.layers = nn.ModuleList(
            DecoderLayer(dim, heads, ffn, num_memories, dropout, attention_dropout, relu_dropout)
            for _ in range(layers))

    def start(self, memories: list[Memory]) -> DecoderCache:
        """Project every memory once for every layer: the cache decoding starts from."""
        if len(memories) != self.num_memories:
            raise ValueError(f"decoder built for {self.num_memories} memories, got {len(memories)}")
        return DecoderCache(0, [None] * len(self.layers),
                            [[layer.cross[i].project_memory(m) for i, (m, _) in enumerate(memories)]
                             for layer in self.layers],
                            [mask for _, mask in memories])

    def forward(self, ids: torch.Tensor, cache: DecoderCache,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, DecoderCache]:
        """Hidden states R [B, T, D] of the tokens `ids` [B, T] following what `cache` has seen.

        `keep` [B, T] (teacher forcing from an empty cache): compute only the positions up to each
        row's last kept one and return R at the kept positions, packed row-major [N, D]; the
        values equal those of the full computation (a position never attends to a later one).
        """
        where = Positions(*ids.shape)
        if keep is not None:
            if cache.position:
                raise ValueError("keep= is for teacher forcing from an empty cache")
            where = Positions.prefixes_of(keep)
        x = where.pack(self.embed(ids, cache.position))
        masks = [_guard_empty(mask[:, None, None, :]) for mask in cache.memory_masks]
        new_kv = []
        for layer, self_kv, memory_kv in zip(self.layers, cache.self_kv, cache.memory_kv):
            x, kv = layer(x, where, self_kv, memory_kv, masks, cache.position)
            new_kv.append(kv)
        grown = DecoderCache(cache.position + ids.shape[1], new_kv, cache.memory_kv, cache.memory_masks)
        if keep is None:
            return where.pad(x), grown
        return where.pad(x)[keep], grown
