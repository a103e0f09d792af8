"""Does the models' order change with training data? Each size's order by mean, with the paired test
between neighbours, and the pairs whose order reverses *significantly* between two sizes.

A swap of means inside the noise is no change of order: two models are ordered at a size only when
the paired approximate randomisation test over the test instances (on the seeds both models have,
each model's runs averaged per instance, as `compare --baseline` does) gives p < `alpha`. Runs without stored outcomes are left
untested (p = None), and an untested pair never counts as a reversal.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from crsbench.errors import DataError
from crsbench.results import significance as sig
from crsbench.results.row_tests import match_seeds, per_instance

ALPHA = 0.05


@dataclass
class PairTest:
    """Model `better` has the higher mean than `worse` at `size`; `p`: paired p-value (None: untested)."""

    size: int
    better: str
    worse: str
    p: float | None

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p is not None and self.p < alpha


@dataclass
class SizeOrder:
    """The models from best to worst mean at one size, and the test between each neighbouring pair."""

    size: int
    models: list[str]
    neighbours: list[PairTest]

    def render(self, alpha: float = ALPHA) -> str:
        """e.g. "kgsf -MIM > kbrd ≈ kgsf": `>` where the neighbours differ at p < alpha, `≈` otherwise."""
        out = self.models[0]
        for pair in self.neighbours:
            sign = ">" if pair.significant(alpha) else "≈"
            out += f" {sign} {pair.worse}" + ("" if pair.p is None else f" (p = {pair.p:.2g})")
        return out


def _paired_p(runs_a: list[str], seeds_a: list[int], runs_b: list[str], seeds_b: list[int], column: str,
              split: str) -> float | None:
    runs_a, runs_b, _ = match_seeds(runs_a, seeds_a, runs_b, seeds_b)
    try:
        a, b = per_instance(column, runs_a, split), per_instance(column, runs_b, split)
    except DataError:                       # no stored outcomes (read_outcomes says so as a DataError)
        return None
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    return sig.paired_permutation_test(np.array([a[k] for k in keys]), np.array([b[k] for k in keys]))


def pair_tests(means: dict[str, dict[int, float]], runs: dict[str, dict[int, list[str]]],
               seeds: dict[str, dict[int, list[int]]], metric: str, split: str = "test") -> list[PairTest]:
    """Every pair of models at every size both were run at. `means`: label -> size -> mean of
    `metric` ("test/all/recall@50"); `runs`: label -> size -> the run dirs behind that mean; `seeds`:
    the same runs' seeds, in that order."""
    column = metric.split("/", 1)[1] if metric.startswith(f"{split}/") else metric
    tests = []
    for a, b in combinations(sorted(means), 2):
        for size in sorted(set(means[a]) & set(means[b])):
            better, worse = (a, b) if means[a][size] >= means[b][size] else (b, a)
            runs_better, runs_worse = runs.get(better, {}).get(size), runs.get(worse, {}).get(size)
            p = _paired_p(runs_better, seeds.get(better, {}).get(size, []), runs_worse,
                          seeds.get(worse, {}).get(size, []), column, split) if runs_better and runs_worse else None
            tests.append(PairTest(size, better, worse, p))
    return tests


def size_orders(means: dict[str, dict[int, float]], tests: list[PairTest]) -> list[SizeOrder]:
    """The order of the models run at each size (two or more), with the neighbours' tests: a model
    run at one size only (say a Table 2 row beside the study's) does not hide the other sizes' orders."""
    found = {(t.size, t.better, t.worse): t for t in tests}
    orders = []
    for size in sorted(set().union(*(set(m) for m in means.values()))):
        run = [label for label in means if size in means[label]]
        if len(run) < 2:
            continue
        models = sorted(run, key=lambda label: -means[label][size])
        orders.append(SizeOrder(size, models, [found[(size, a, b)] for a, b in zip(models, models[1:])]))
    return orders


def reversals(tests: list[PairTest], alpha: float = ALPHA) -> list[tuple[PairTest, PairTest]]:
    """Pairs of models significantly ordered one way at one size and the other way at another."""
    by_pair: dict[frozenset, list[PairTest]] = {}
    for t in tests:
        if t.significant(alpha):
            by_pair.setdefault(frozenset((t.better, t.worse)), []).append(t)
    out = []
    for found in by_pair.values():
        for first, second in combinations(sorted(found, key=lambda t: t.size), 2):
            if first.better != second.better:
                out.append((first, second))
    return out
