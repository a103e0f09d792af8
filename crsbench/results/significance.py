"""Significance tests and confidence intervals for comparing two rows of a results table.

- Metrics that are a mean over instances (Recall@k, MRR@k, NDCG@k per recommendation instance;
  BLEU-n and the number of mentioned items per response): a two-sided paired approximate
  randomisation test (`paired_permutation_test`): under the null hypothesis the two systems'
  outcomes of an instance are exchangeable, so each resample swaps the pair's outcomes (flips the
  sign of their difference) with probability 1/2; p = (1 + #{|mean difference| >= observed}) /
  (1 + resamples), or the exact share over all 2^n swaps when that is no more than `resamples`.
- Corpus-level metrics (Dist-n, distinct n-gram ratio, perplexity): approximate randomisation
  over responses (`paired_randomization_test`): each resample swaps the two systems' responses to
  a random half of the contexts and scores both pseudo-systems as corpora; p = (1 + #{|difference|
  >= observed}) / (1 + resamples). `subsample_ci` gives a 95 % interval by half-sampling the
  responses without replacement (the ordinary bootstrap is biased for a count of distinct n-grams:
  see its docstring).
- Over seeds: Welch's t-test (`welch_test`, scipy.stats) on the per-seed values of two rows with at
  least 2 seeds each.
Resamples are drawn from numpy's default generator with a fixed seed, so p-values reproduce.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterator, Sequence

import numpy as np

RESAMPLES = 10_000
SEED = 0
_CHUNK_CELLS = 4_000_000          # resamples x instances evaluated at once (bounds memory)


def paired_permutation_test(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> float:
    """Two-sided p-value of mean(a) == mean(b) for paired per-instance outcomes."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = d.size
    if n == 0:
        return math.nan
    observed = abs(d.sum())
    tolerance = 1e-9 * max(1.0, observed)
    if not np.any(d):
        return 1.0
    if n < 63 and 2 ** n <= resamples:           # exact: every assignment of swaps
        signs = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        return float(np.mean(np.abs(signs @ d) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = 0
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, step):
        m = min(step, resamples - start)
        signs = rng.integers(0, 2, size=(m, n), dtype=np.int8).astype(np.float64) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed - tolerance))
    return (hits + 1) / (resamples + 1)


def welch_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's unequal-variance t-test; nan with fewer than 2 values a side, or
    when neither side varies over seeds (deterministic models: seeds are no sample of anything,
    and the paired test over instances is the one that speaks)."""
    from scipy import stats
    if len(a) < 2 or len(b) < 2:
        return math.nan
    scale = max(abs(np.mean(a)), abs(np.mean(b)), 1e-12)
    if np.std(a) <= 1e-9 * scale and np.std(b) <= 1e-9 * scale:
        return math.nan
    with warnings.catch_warnings():      # one constant side (popularity's seeds) is a valid case: no
        warnings.simplefilter("ignore", RuntimeWarning)        # "precision loss" noise in the table
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


class CorpusStatistic:
    """A corpus-level metric as a function of per-response features summed over the responses:
    value = finish(weights @ features, number of responses). `features` is [responses, F] (dense
    or scipy sparse); weights select responses (a 0/1 row per resample)."""

    def __init__(self, features, finish) -> None:
        self.features, self.finish = features, finish

    @property
    def size(self) -> int:
        return self.features.shape[0]

    def sums(self, weights: np.ndarray) -> np.ndarray:
        if isinstance(self.features, np.ndarray):
            return weights @ self.features
        return np.asarray((self.features.T @ weights.T).T)

    def value(self, weights: np.ndarray | None = None, count: float | None = None) -> np.ndarray | float:
        if weights is None:
            return float(self.finish(self.sums(np.ones((1, self.size))), self.size)[0])
        return self.finish(self.sums(weights), count)


def perplexity_statistic(nll: np.ndarray, tokens: np.ndarray) -> CorpusStatistic:
    """exp(sum of gold-token NLL / number of gold tokens) over the selected responses."""
    def finish(sums: np.ndarray, _count: float) -> np.ndarray:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return np.exp(sums[:, 0] / np.maximum(sums[:, 1], 1))
    return CorpusStatistic(np.stack([nll, tokens], axis=1).astype(np.float64), finish)


def distinct_statistics(systems: Sequence[Sequence[Sequence[str]]], n: int,
                        ratio: bool = False) -> list[CorpusStatistic]:
    """dist@n (distinct n-grams / responses, KGSF) or dist_ratio@n (distinct / all n-grams) of each
    system's responses, over one n-gram index shared by all of them (so responses can be swapped)."""
    from scipy import sparse
    ids: dict[tuple[str, ...], int] = {}
    parts = []
    for responses in systems:
        rows, cols, totals = [], [], []
        for r, tokens in enumerate(responses):
            grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
            totals.append(len(grams))
            for g in set(grams):
                rows.append(r)
                cols.append(ids.setdefault(g, len(ids)))
        parts.append((rows, cols, totals))
    width = len(ids) + 1                    # last column: the response's number of n-grams
    out = []
    for rows, cols, totals in parts:
        size = len(totals)
        data = np.concatenate([np.ones(len(rows)), np.asarray(totals, dtype=np.float64)])
        matrix = sparse.csr_matrix((data, (np.concatenate([rows, np.arange(size)]).astype(np.int64),
                                           np.concatenate([cols, np.full(size, width - 1)]).astype(np.int64))),
                                   shape=(size, width))

        def finish(sums: np.ndarray, count: float) -> np.ndarray:
            unique = (sums[:, :-1] > 0).sum(axis=1).astype(np.float64)
            return unique / np.maximum(sums[:, -1], 1) if ratio else unique / max(count, 1)
        out.append(CorpusStatistic(matrix, finish))
    return out


def _chunks(size: int, resamples: int) -> Iterator[int]:
    step = max(1, _CHUNK_CELLS // max(size, 1) // 4)
    for start in range(0, resamples, step):
        yield min(step, resamples - start)


def paired_randomization_test(a: Sequence[CorpusStatistic], b: Sequence[CorpusStatistic],
                              resamples: int = RESAMPLES, seed: int = SEED) -> float:
    """Two-sided p-value of a corpus-level difference: approximate randomisation, each resample
    swapping the two systems' responses to a random half of the contexts (Riezler & Maxwell 2005).
    `a` and `b` are a row's seeds (paired in order); a row's value is the mean over its seeds."""
    pairs = list(zip(a, b))
    size = pairs[0][0].size
    if any(x.size != size or y.size != size for x, y in pairs) or size == 0:
        raise ValueError("paired_randomization_test: the systems must score the same responses")
    observed = float(np.mean([x.value() for x, _ in pairs]) - np.mean([y.value() for _, y in pairs]))
    if observed == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    hits = 0
    for m in _chunks(size, resamples):
        keep = rng.integers(0, 2, size=(m, size)).astype(np.float64)
        swap = 1.0 - keep
        left = np.mean([x.finish(x.sums(keep) + y.sums(swap), size) for x, y in pairs], axis=0)
        right = np.mean([y.finish(y.sums(keep) + x.sums(swap), size) for x, y in pairs], axis=0)
        hits += int(np.sum(np.abs(left - right) >= abs(observed) - 1e-12))
    return (hits + 1) / (resamples + 1)


def subsample_ci(parts: Sequence[CorpusStatistic], resamples: int = RESAMPLES, seed: int = SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Interval of a corpus-level metric (a row's seeds averaged) by half-sampling without
    replacement: the spread of the metric over random halves of the responses, centred on the
    full-corpus value. Half-samples drawn without replacement have the variance of the full sample's
    estimate for a smooth statistic, and unlike the ordinary bootstrap they never repeat a response:
    with replacement, about 37 % of the responses drop out of every resample, and a count of
    distinct n-grams falls far below its value (dist@2 2.0 resampled to 1.18-1.36)."""
    size = parts[0].size
    half = size // 2
    if half < 1:
        value = float(np.mean([p.value() for p in parts]))
        return value, value
    value = float(np.mean([p.value() for p in parts]))
    rng = np.random.default_rng(seed)
    draws = []
    for m in _chunks(size, resamples):
        order = np.argsort(rng.random((m, size)), axis=1)[:, :half]
        weights = np.zeros((m, size))
        np.put_along_axis(weights, order, 1.0, axis=1)
        draws.append(np.mean([p.finish(p.sums(weights), half) for p in parts], axis=0))
    values = np.concatenate(draws)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values - values.mean(), [tail, 100 - tail])
    return value + float(low), value + float(high)
