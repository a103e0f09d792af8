"""Metrics of generated responses, on word-level tokens, each response first cut at the end token.

dist@n (KGSF's definition): number of distinct n-grams over all responses / number of responses.
dist_ratio@n: number of distinct n-grams / total number of n-grams (the other common definition).
item_share: share of responses with at least one movie mention; item_distinct: mean number of
    different movies mentioned per response (Item Ratio's companions: repeats count once).
item_ratio: movie mentions (item tokens such as "@84001") in the generated responses / number of
    responses — the definition of the NTRD code; KGSF gives no formula.
bleu@n: CUMULATIVE sentence BLEU-n (geometric mean of the 1..n-gram precisions, uniform weights
    1/n, times the brevity penalty) of each response against its single gold reference, with nltk's
    smoothing method 1 (a zero n-gram match count becomes 0.1), averaged over responses (sentence
    level, as CRSLab reports). A response or reference that is empty after the cut scores 0.
ppl: exp(total negative log-likelihood / total number of gold tokens), gold tokens including the
    end token and excluding padding (micro-averaged over tokens, not over responses).
Empty inputs never crash: with no responses every ratio is 0.0; with no gold tokens ppl is inf.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from crsbench.errors import TrainingError

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


def sentence_bleus(responses: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                   n: int) -> list[float]:
    """Cumulative sentence BLEU-n of each response (smoothing method 1); an empty one scores 0."""
    if len(responses) != len(references):
        raise ValueError(f"bleu: {len(responses)} responses but {len(references)} references")
    weights = tuple([1.0 / n] * n)
    out = []
    for hyp, ref in zip(responses, references):
        hyp, ref = cut_response(hyp), cut_response(ref)
        out.append(sentence_bleu([ref], hyp, weights=weights, smoothing_function=_SMOOTH) if hyp and ref else 0.0)
    return out


def item_spread(responses: Sequence[Sequence[str]], is_item: Callable[[str], bool]) -> tuple[float, float]:
    """(item_share, item_distinct): the share of responses that mention a movie, and the mean number
    of different movies a response mentions. Item Ratio counts mentions, so a response that repeats
    one movie ("Click (2006) Click (2006)") scores 2 there and 1 here."""
    sets = [{t for t in cut_response(r) if is_item(t)} for r in responses]
    n = max(len(responses), 1)
    return sum(1 for s in sets if s) / n, sum(len(s) for s in sets) / n


def bleu(responses: Sequence[Sequence[str]], references: Sequence[Sequence[str]], n: int) -> float:
    """Mean cumulative sentence BLEU-n (smoothing method 1); an empty response scores 0."""
    return sum(sentence_bleus(responses, references, n)) / max(len(responses), 1)


def perplexity(nll_sums: float | Sequence[float] | torch.Tensor,
               num_tokens: int | Sequence[int] | torch.Tensor) -> float:
    """exp(sum of NLL / sum of token counts), from totals or per-sample values; inf with no tokens.

    NaN raises TrainingError (a diverged model); a too large mean NLL gives inf, not an overflow.
    """
    total = float(torch.as_tensor(nll_sums, dtype=torch.float64).sum())
    count = int(torch.as_tensor(num_tokens, dtype=torch.float64).sum())
    if math.isnan(total):
        raise TrainingError("the model's response log-likelihood is NaN",
                            hint="the weights have probably diverged: lower the learning rate")
    if count <= 0:
        return float("inf")
    try:
        return math.exp(total / count)
    except OverflowError:
        return float("inf")


def generation_metrics(responses: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                       is_item: Callable[[str], bool],
                       per_response: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Every response metric but perplexity, keyed as in the module docstring; `per_response`, when
    given, receives each response's BLEU-n ("bleu@n" -> one score per response)."""
    out: dict[str, float] = {"count": float(len(responses))}
    for n in (2, 3, 4):
        out[f"dist@{n}"], out[f"dist_ratio@{n}"] = distinct(responses, n)
    out["item_ratio"] = item_ratio(responses, is_item)
    out["item_share"], out["item_distinct"] = item_spread(responses, is_item)
    for n in (1, 2, 3, 4):
        scores = sentence_bleus(responses, references, n)
        out[f"bleu@{n}"] = sum(scores) / max(len(responses), 1)
        if per_response is not None:
            per_response[f"bleu@{n}"] = scores
    return out


def item_mention_profile(records: Sequence[dict]) -> dict[str, float]:
    """What a model's generated movie mentions are, from `evaluate --dump` records: Item Ratio alone
    counts mentions, so it cannot tell a fitting recommendation from a repeated or random item.

    item_ratio: mentions / responses (as above). with_item: share of responses with a mention.
    distinct_items: different items mentioned over the split. repeated: share of mentions that repeat
    an item earlier in the same response. gold: share of mentions that are an item of the gold
    response. context: share already mentioned in the dialogue context. top10: share among the
    model's own top-10 recommendations (records without "recommended" count as misses).
    """
    mentions = [(r, i, item) for r in records for i, item in enumerate(r["generated_items"])]
    n = max(len(mentions), 1)
    return {
        "responses": float(len(records)),
        "item_ratio": len(mentions) / max(len(records), 1),
        "with_item": sum(1 for r in records if r["generated_items"]) / max(len(records), 1),
        "distinct_items": float(len({item for _, _, item in mentions})),
        "repeated": sum(1 for r, i, item in mentions if item in r["generated_items"][:i]) / n,
        "gold": sum(1 for r, _, item in mentions if item in r["gold_items"]) / n,
        "context": sum(1 for r, _, item in mentions if item in r["context_items"]) / n,
        "top10": sum(1 for r, _, item in mentions if item in r.get("recommended", [])) / n,
    }
