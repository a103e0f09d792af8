"""The shared Transformer blocks and decoders: incremental decoding computes the same function as a
full forward pass, empty memories stay finite, and beam search finds what greedy misses."""
from __future__ import annotations

import torch
from torch import nn

from crsbench.models.decoding import beam_search, greedy
from crsbench.models.transformer import TokenEmbedding, TransformerDecoder, TransformerEncoder


def _decoder(num_memories: int = 2) -> TransformerDecoder:
    torch.manual_seed(0)
    embed = TokenEmbedding(nn.Embedding(11, 8), dropout=0.0)
    return TransformerDecoder(embed, layers=2, heads=2, ffn=16, num_memories=num_memories, dropout=0.0).eval()


def _memories() -> list:
    torch.manual_seed(1)
    a = torch.randn(3, 4, 8)
    a_mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)  # row 1: empty
    b = torch.randn(3, 5, 8)
    b_mask = torch.ones(3, 5, dtype=torch.bool)
    return [(a, a_mask), (b, b_mask)]


def test_incremental_decoding_equals_the_full_forward_pass():
    decoder = _decoder()
    ids = torch.randint(1, 11, (3, 6))
    full, _ = decoder(ids, decoder.start(_memories()))
    cache = decoder.start(_memories())
    steps = []
    for t in range(ids.shape[1]):
        out, cache = decoder(ids[:, t:t + 1], cache)
        steps.append(out)
    assert torch.allclose(full, torch.cat(steps, dim=1), atol=1e-5)
    # a later token never changes an earlier position (causal)
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] % 10) + 1
    again, _ = decoder(changed, decoder.start(_memories()))
    assert torch.allclose(full[:, :-1], again[:, :-1], atol=1e-6)
    assert not torch.allclose(full[:, -1], again[:, -1])


def test_a_memory_with_no_valid_element_gives_finite_outputs_and_gradients():
    decoder = _decoder().train()
    memories = [(m.clone().requires_grad_(True), mask) for m, mask in _memories()]
    out, _ = decoder(torch.randint(1, 11, (3, 4)), decoder.start(memories))
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(m.grad).all() for m, _ in memories)


def test_encoder_zeroes_padding_and_ignores_it():
    torch.manual_seed(0)
    encoder = TransformerEncoder(TokenEmbedding(nn.Embedding(11, 8), 0.0), 2, 2, 16, 0.0).eval()
    ids = torch.tensor([[3, 4, 5, 0, 0]])
    mask = ids != 0
    out = encoder(ids, mask)
    assert (out[0, 3:] == 0).all()
    other = encoder(torch.tensor([[3, 4, 5, 7, 9]]), mask)    # different padding content
    assert torch.allclose(out, other, atol=1e-6)


def test_cache_select_reorders_rows():
    decoder = _decoder()
    ids = torch.randint(1, 11, (3, 3))
    _, cache = decoder(ids, decoder.start(_memories()))
    index = torch.tensor([2, 2, 0])
    picked = cache.select(index)
    nxt = torch.randint(1, 11, (3, 1))
    out_picked, _ = decoder(nxt, picked)
    full, _ = decoder(torch.cat([ids[index], nxt], dim=1),
                      decoder.start([(m[index], k[index]) for m, k in _memories()]))
    assert torch.allclose(out_picked[:, -1], full[:, -1], atol=1e-5)


class _Table:
    """A toy decoding state: log-probabilities depend on the previous token only."""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def select(self, index: torch.Tensor) -> "_Table":
        return _Table(len(index))


END = 3


def _toy_step(last: torch.Tensor, state: _Table):
    # vocab: 0 start, 1 "a", 2 "b", 3 end. After start: a 0.6, b 0.4. After a: end 0.3, a 0.35, b 0.35;
    # after b: end 0.95. Greedy takes a (0.6) then a/b...; the best sequence is "b end" (0.38).
    table = torch.tensor([[0.0, 0.6, 0.4, 0.0],
                          [0.0, 0.35, 0.35, 0.3],
                          [0.0, 0.025, 0.025, 0.95],
                          [0.0, 0.0, 0.0, 1.0]])
    probs = table[last.squeeze(1)]
    return torch.log(probs.clamp(min=1e-12)), state


def test_beam_search_finds_the_sequence_greedy_misses():
    out_greedy = greedy(_toy_step, _Table(2), 2, 0, END, 5, torch.device("cpu"))
    assert out_greedy[0][0] == 1                       # greedy commits to "a"
    out_beam = beam_search(_toy_step, _Table(2), 2, 0, END, 5, 2, torch.device("cpu"))
    assert out_beam == [[2, END], [2, END]]


def test_beam_search_never_scores_below_greedy():
    decoder = _decoder(num_memories=1)
    torch.manual_seed(3)
    head = nn.Linear(8, 11)
    memories = [_memories()[1]]

    def step(last, cache):
        h, cache = decoder(last, cache)
        return torch.log_softmax(head(h[:, -1]), dim=-1), cache

    def score(rows):
        """Total log-probability of each (complete or max-length) sequence."""
        totals = []
        for r, row in enumerate(rows):
            cache = decoder.start([(m[r:r + 1], k[r:r + 1]) for m, k in memories])
            last, total = torch.tensor([[0]]), 0.0
            for token in row:
                logp, cache = step(last, cache)
                total += float(logp[0, token])
                last = torch.tensor([[token]])
            totals.append(total)
        return totals

    cpu = torch.device("cpu")
    g = greedy(step, decoder.start(memories), 3, 0, END, 7, cpu)
    for k in (1, 3):
        b = beam_search(step, decoder.start(memories), 3, 0, END, 7, k, cpu)
        assert all(len(r) <= 7 for r in b)
        for sg, sb, rg, rb in zip(score(g), score(b), g, b):
            if rg[-1] == END:          # complete greedy hypotheses compete with beam's
                assert sb >= sg - 1e-5, (rg, rb)
