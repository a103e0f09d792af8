"""Greedy and beam-search decoding, batched, for any model that exposes one decoding step.

A model gives `start(batch) -> state` and `step(last_tokens [N, 1], state) -> (log_probs [N, V],
state)`, where `state.select(index)` keeps/repeats rows (e.g. a transformer.DecoderCache). Each step
feeds only the newest token; the state carries the cached keys/values, so decoding is linear in the
response length per token.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import torch


class DecodeState(Protocol):
    def select(self, index: torch.Tensor) -> "DecodeState": ...


Step = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


def block_repeats(log_probs: torch.Tensor, history: torch.Tensor, n: int) -> torch.Tensor:
    """log_probs [N, V] with -inf for every token that would repeat an n-gram already in the row's
    history [N, t] (its generated tokens): `eval.no_repeat_ngram`, off (0) by default as in the paper."""
    if n <= 0 or history.shape[1] < n - 1:
        return log_probs
    log_probs = log_probs.clone()
    rows = history.tolist()
    for r, seq in enumerate(rows):
        prefix = seq[len(seq) - (n - 1):] if n > 1 else []
        banned = {seq[i + n - 1] for i in range(len(seq) - n + 1) if seq[i:i + n - 1] == prefix}
        if banned:
            log_probs[r, list(banned)] = float("-inf")
    return log_probs


@torch.no_grad()
def greedy(step: Step, state: DecodeState, batch_size: int, start_id: int, end_id: int,
           max_length: int, device: torch.device, no_repeat_ngram: int = 0, full: bool = False) -> list[list[int]]:
    """The most likely token at every step; each sequence stops after its end token. `full`: decode
    all max_length steps and return every row uncut (the KGSF release scores Dist-n on these)."""
    tokens = torch.full((batch_size, 1), start_id, dtype=torch.long, device=device)
    out = torch.empty(batch_size, 0, dtype=torch.long, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_length):
        log_probs, state = step(tokens, state)
        log_probs = block_repeats(log_probs, out, no_repeat_ngram)
        tokens = log_probs.argmax(dim=-1, keepdim=True)
        out = torch.cat([out, tokens], dim=1)
        done |= tokens.squeeze(1) == end_id
        if bool(done.all()) and not full:
            break
    return out.tolist() if full else [_cut(row, end_id) for row in out.tolist()]


@torch.no_grad()
def beam_search(step: Step, state: DecodeState, batch_size: int, start_id: int, end_id: int,
                max_length: int, beam_size: int, device: torch.device,
                length_penalty: float = 0.0, no_repeat_ngram: int = 0) -> list[list[int]]:
    """Beam search with `beam_size` hypotheses per sample.

    A hypothesis is finished when it emits the end token; its score is the sum of its token
    log-probabilities divided by length ** length_penalty (0: no normalisation). A sample stops
    once it has `beam_size` finished hypotheses or no live beam can beat its best finished one.
    The best finished hypothesis wins; with none, the best live one at max_length.
    """
    k = beam_size
    state = state.select(torch.arange(batch_size, device=device).repeat_interleave(k))
    scores = torch.full((batch_size, k), float("-inf"), device=device)
    scores[:, 0] = 0.0                                      # all beams start identical: keep one
    history = torch.full((batch_size * k, 1), start_id, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch_size)]
    done = [False] * batch_size

    def normalised(score: float, length: int) -> float:
        return score / (length ** length_penalty) if length_penalty else score

    for t in range(max_length):
        log_probs, state = step(history[:, -1:], state)
        log_probs = block_repeats(log_probs, history[:, 1:], no_repeat_ngram)
        vocab = log_probs.shape[-1]
        cand = (scores.unsqueeze(-1) + log_probs.float().view(batch_size, k, vocab)).view(batch_size, -1)
        top_scores, top_index = cand.topk(min(2 * k, cand.shape[1]), dim=1)
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        next_rows, next_tokens, next_scores = [], [], []
        for b in range(batch_size):
            kept = 0
            for s, i in zip(top_scores[b], top_index[b]):
                beam, token = divmod(i, vocab)
                if s == float("-inf"):
                    break
                if token == end_id:
                    if not done[b] and len(finished[b]) < k:
                        prefix = history[b * k + beam, 1:].tolist()
                        finished[b].append((normalised(s, t + 1), prefix + [end_id]))
                    continue
                if kept < k:
                    next_rows.append(b * k + beam)
                    next_tokens.append(token)
                    next_scores.append(s)
                    kept += 1
            while kept < k:                                 # pad with dead beams
                next_rows.append(b * k)
                next_tokens.append(end_id)
                next_scores.append(float("-inf"))
                kept += 1
            if finished[b] and not done[b]:
                best_done = max(f for f, _ in finished[b])
                best_live = max(next_scores[-k:])
                # without length normalisation a live beam's score can only fall
                if len(finished[b]) >= k or (not length_penalty and best_live <= best_done):
                    done[b] = True
        if all(done):
            break
        rows = torch.tensor(next_rows, device=device)
        history = torch.cat([history.index_select(0, rows),
                             torch.tensor(next_tokens, device=device).unsqueeze(1)], dim=1)
        scores = torch.tensor(next_scores, device=device).view(batch_size, k)
        state = state.select(rows)
    results = []
    for b in range(batch_size):
        if finished[b]:
            results.append(max(finished[b], key=lambda f: f[0])[1])
        else:
            best = int(torch.argmax(scores[b]))
            results.append(history[b * k + best, 1:].tolist())
    return [_cut(r, end_id) for r in results]


def _cut(ids: list[int], end_id: int) -> list[int]:
    """Ids up to and including the first end token."""
    return ids[:ids.index(end_id) + 1] if end_id in ids else ids


def decode(step: Step, state: DecodeState, batch_size: int, start_id: int, end_id: int,
           max_length: int, beam_size: int, device: torch.device, no_repeat_ngram: int = 0,
           full: bool = False) -> list[list[int]]:
    """Greedy for beam_size 1 (uncut rows with `full`), beam search otherwise (always cut)."""
    if beam_size <= 1:
        return greedy(step, state, batch_size, start_id, end_id, max_length, device, no_repeat_ngram, full)
    return beam_search(step, state, batch_size, start_id, end_id, max_length, beam_size, device,
                       no_repeat_ngram=no_repeat_ngram)
