"""Metrics of generated responses, on word-level tokens, each response first cut at the end token.

dist@n (KGSF's definition): number of distinct n-grams over all responses / number of responses.
dist_ratio@n: number of distinct n-grams / total number of n-grams (the other common definition).
item_ratio: movie mentions (item tokens such as "@84001") in the generated responses / number of
    responses — the definition of the NTRD code; KGSF gives no formula.
bleu@n: cumulative sentence BLEU-n (uniform weights over 1..n-grams) of each response against its
    single reference, nltk's smoothing method 1, averaged over responses (as CRSLab reports).
ppl: exp(total negative log-likelihood / total number of gold tokens), gold tokens including the
    end token and excluding padding.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

END = "__end__"
PAD = "__pad__"
_SMOOTH = SmoothingFunction().method1


def cut_response(tokens: Sequence[str], end: str = END) -> list[str]:
    """Tokens before the first end token, padding removed."""
    out = []
    for token in tokens:
        if token == end:
            break
        if token != PAD:
            out.append(token)
    return out


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct(responses: Sequence[Sequence[str]], n: int) -> tuple[float, float]:
    """(dist@n, dist_ratio@n) over the cut responses; 0.0 when there is nothing to count."""
    grams = [g for r in responses for g in _ngrams(cut_response(r), n)]
    unique = len(set(grams))
    return unique / max(len(responses), 1), unique / max(len(grams), 1)


def item_ratio(responses: Sequence[Sequence[str]], is_item: Callable[[str], bool]) -> float:
    """Item mentions in the cut responses divided by the number of responses."""
    mentions = sum(1 for r in responses for t in cut_response(r) if is_item(t))
    return mentions / max(len(responses), 1)


def bleu(responses: Sequence[Sequence[str]], references: Sequence[Sequence[str]], n: int) -> float:
    """Mean cumulative sentence BLEU-n (smoothing method 1); an empty response scores 0."""
    weights = tuple([1.0 / n] * n)
    total = 0.0
    for hyp, ref in zip(responses, references):
        hyp, ref = cut_response(hyp), cut_response(ref)
        if hyp and ref:
            total += sentence_bleu([ref], hyp, weights=weights, smoothing_function=_SMOOTH)
    return total / max(len(responses), 1)


def perplexity(nll_sum: float, num_tokens: int) -> float:
    """exp(mean negative log-likelihood per gold token); inf when there are no tokens."""
    return math.exp(nll_sum / num_tokens) if num_tokens else float("inf")


def generation_metrics(responses: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                       is_item: Callable[[str], bool]) -> dict[str, float]:
    """Every response metric but perplexity, keyed as in the module docstring."""
    out: dict[str, float] = {"count": float(len(responses))}
    for n in (2, 3, 4):
        out[f"dist@{n}"], out[f"dist_ratio@{n}"] = distinct(responses, n)
    out["item_ratio"] = item_ratio(responses, is_item)
    for n in (1, 2, 3, 4):
        out[f"bleu@{n}"] = bleu(responses, references, n)
    return out
