"""Significance of each row of a comparison table against a baseline row, from the runs' stored
per-instance outcomes (crsbench/results/outcomes.py); the tests are in significance.py.

The paired tests use the seeds both rows have (all of them when the rows share none): a one-seed
row is paired with the baseline's run of the same seed, as `benchmarks/paired_runs.py` pairs two
runs, and a conversation cell with the baseline cell that started from the same recommender seed.
For a metric that is a mean over instances, each row's per-instance outcome is averaged over those
seeds, and the two rows are paired on the instances both scored (by conversation, turn and target).
Corpus-level metrics are paired by response and tested by approximate randomisation (responses
swapped between the rows), seed with seed, and averaged. Welch's t-test compares all the per-seed
values.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from loguru import logger

from crsbench.errors import ConfigError, DataError
from crsbench.metrics.definitions import GEN, metric, parse
from crsbench.results import significance as sig
from crsbench.results.compare import Cell, ComparisonTable, Row
from crsbench.results.outcomes import Outcomes, read_outcomes
from crsbench.run_dir import RunDir


@lru_cache(maxsize=256)
def _outcomes(run_dir: str, split: str) -> Outcomes:
    return read_outcomes(RunDir(Path(run_dir)).outcomes(split))


def _rec_values(name: str, k: int | None, ranks: np.ndarray) -> np.ndarray:
    hit = (ranks <= k).astype(np.float64)
    if name == "recall@k":
        return hit
    if name == "mrr@k":
        return hit / ranks
    if name == "ndcg@k":
        return hit / np.log2(ranks + 1)
    raise ValueError(name)


def per_instance(column: str, runs: list[str], split: str) -> dict[str, float]:
    """key -> the outcome averaged over the given runs (instances all of them scored)."""
    view, _, name = column.partition("/")
    spec, k = parse(name)
    tables = []
    for run in runs:
        out = _outcomes(run, split)
        if spec.task == GEN:
            if out.gen is None:
                raise DataError(f"{run}: no generation outcomes", hint=f"crsbench evaluate --run {run}")
            source = "items" if spec.name == "item_ratio" else name     # bleu@n, item_share, item_distinct
            tables.append(dict(zip(out.gen.keys.tolist(), out.gen.scores[source].tolist())))
        else:
            if out.rec is None or view not in out.rec.views:
                raise DataError(f"{run}: no recommendation outcomes for view '{view}'",
                                hint=f"crsbench evaluate --run {run}")
            mask = out.rec.views[view]
            values = _rec_values(spec.name, k, out.rec.ranks[mask])
            tables.append(dict(zip(out.rec.keys[mask].tolist(), values.tolist())))
    common = set(tables[0]).intersection(*tables[1:])
    return {key: sum(t[key] for t in tables) / len(tables) for key in common}


def _corpus(column: str, sides: list[list[str]], split: str, keys: list[str]) -> list[list[sig.CorpusStatistic]]:
    """Per side (a list of runs: a row's seeds), the corpus statistic of each run over the
    responses `keys`; Dist-n statistics of all sides share one n-gram index."""
    _, _, name = column.partition("/")
    spec, n = parse(name)
    gens = []
    for runs in sides:
        side = []
        for run in runs:
            gen = _outcomes(run, split).gen
            if gen is None:
                raise DataError(f"{run}: no generation outcomes", hint=f"crsbench evaluate --run {run}")
            if spec.name == "ppl" and "nll" not in gen.scores:
                raise DataError(f"{run}: no per-response NLL stored", hint=f"crsbench evaluate --run {run}")
            index = {key: i for i, key in enumerate(gen.keys.tolist())}
            side.append((gen, [index[key] for key in keys]))
        gens.append(side)
    if spec.name == "ppl":
        return [[sig.perplexity_statistic(g.scores["nll"][rows], g.scores["tokens"][rows]) for g, rows in side]
                for side in gens]
    if spec.name == "dist_release@n" and any(g.release is None for side in gens for g, _ in side):
        raise DataError("no release-view responses stored (scored with beam search?)",
                        hint="score the runs again with greedy decoding: crsbench evaluate --run RUN")
    texts = (lambda g: g.release) if spec.name == "dist_release@n" else (lambda g: g.responses)
    flat = sig.distinct_statistics([[texts(g)[i] for i in rows] for side in gens for g, rows in side], n,
                                   ratio=spec.name == "dist_ratio@n")
    out, start = [], 0
    for side in gens:
        out.append(flat[start:start + len(side)])
        start += len(side)
    return out


def _gen_keys(runs: list[str], split: str) -> set[str]:
    keys = [set(_outcomes(r, split).gen.keys.tolist()) for r in runs if _outcomes(r, split).gen is not None]
    return set.intersection(*keys) if keys else set()


def match_seeds(runs: list[str], seeds: list[int], other_runs: list[str],
                other_seeds: list[int]) -> tuple[list[str], list[str], list[int] | None]:
    """Two sides' runs of the seeds both have, in seed order, and those seeds; all runs (in the order
    given) and None when the sides share no seed or do not know every run's seed."""
    known = len(seeds) == len(runs) and len(other_seeds) == len(other_runs)
    common = sorted(set(seeds) & set(other_seeds)) if known else []
    if not common:
        return runs, other_runs, None
    mine, theirs = dict(zip(seeds, runs)), dict(zip(other_seeds, other_runs))
    return [mine[s] for s in common], [theirs[s] for s in common], common


def matched_runs(cell: Cell, base: Cell) -> tuple[list[str], list[str], list[int] | None]:
    """`match_seeds` for two table cells."""
    return match_seeds(cell.runs, cell.seeds, base.runs, base.seeds)


def compare_cell(column: str, cell: Cell, base: Cell, split: str, resamples: int, seed: int) -> None:
    """Fill `cell`'s p-values against `base` (same column of the baseline row)."""
    spec = metric(column)
    if spec.level == "count":
        return
    cell.p_welch = sig.welch_test(cell.values, base.values)
    if math.isnan(cell.p_welch):
        cell.p_welch = None
    runs, base_runs, cell.paired_seeds = matched_runs(cell, base)
    if spec.level == "instance":
        mine, theirs = per_instance(column, runs, split), per_instance(column, base_runs, split)
        keys = sorted(set(mine) & set(theirs))
        if keys:
            cell.p_paired = sig.paired_permutation_test(np.array([mine[k] for k in keys]),
                                                        np.array([theirs[k] for k in keys]), resamples, seed)
        return
    keys = sorted(_gen_keys(runs, split) & _gen_keys(base_runs, split))
    if keys:
        mine, theirs = _corpus(column, [runs, base_runs], split, keys)
        cell.p_paired = sig.paired_randomization_test(mine, theirs, resamples, seed)


def add_confidence_intervals(table: ComparisonTable, resamples: int, seed: int) -> None:
    """95 % intervals for the generation cells, by half-sampling the responses: corpus-level metrics
    (Dist-n, ratios, perplexity) and the per-response means (Item Ratio and its companions, BLEU)."""
    for row in table.rows:
        for column, cell in row.cells.items():
            spec = metric(column)
            if spec.task != GEN or spec.level == "count":
                continue
            keys = sorted(_gen_keys(cell.runs, table.split))
            try:
                if spec.level == "corpus":
                    (parts,) = _corpus(column, [cell.runs], table.split, keys)
                else:
                    values = per_instance(column, cell.runs, table.split)
                    x = np.array([values[k] for k in sorted(values)])[:, None]
                    parts = [sig.CorpusStatistic(x, lambda sums, count: sums[:, 0] / max(count, 1))]
                cell.ci = sig.subsample_ci(parts, resamples, seed)
            except DataError as exc:
                logger.warning(f"no interval for {row.label} {column}: {exc.message}")


def find_row(table: ComparisonTable, baseline: str) -> Row:
    """The row named MODEL or MODEL:TAG (the tag as written in run.tag, e.g. kgsf:-MIM)."""
    model, _, tag = baseline.partition(":")
    found = [r for r in table.rows if r.model == model and r.tag == tag]
    if not found:
        shown = ", ".join(f"{r.model}:{r.tag}" if r.tag else r.model for r in table.rows) or "(none)"
        raise ConfigError(f"--baseline {baseline}: no such row in the {table.dataset} table",
                          hint=f"rows: {shown}")
    if len(found) > 1:
        raise ConfigError(f"--baseline {baseline}: {len(found)} rows match (other data versions or protocols)",
                          hint="leave out --all-data, or compare one data version at a time")
    return found[0]


def add_significance(table: ComparisonTable, baseline: str, resamples: int = sig.RESAMPLES,
                     seed: int = sig.SEED) -> None:
    """Mark every row's cells against the baseline row (the baseline's own cells stay unmarked)."""
    base = find_row(table, baseline)
    table.baseline = base
    for row in table.rows:
        if row is base:
            continue
        for column, cell in row.cells.items():
            if column in base.cells:
                try:
                    compare_cell(column, cell, base.cells[column], table.split, resamples, seed)
                except DataError as exc:
                    logger.warning(f"no test for {row.label} {column}: {exc.message}")
    table.notes.extend(_fewer_paired_seeds(table, base))


def _fewer_paired_seeds(table: ComparisonTable, base: Row) -> list[str]:
    """A note per row whose paired tests used fewer seeds than its cell or the baseline's cell has
    (a row's recommender-only seeds are no seeds of its generation cells)."""
    notes = []
    for row in table.rows:
        used = {tuple(c.paired_seeds) for column, c in row.cells.items() if c.paired_seeds is not None
                and len(c.paired_seeds) < max(len(c.seeds), len(base.cells[column].seeds))}
        for seeds in sorted(used):
            shown = ", ".join(map(str, seeds))
            notes.append(f"{row.label}: paired tests (*) on seed(s) {shown} only, the seeds it shares with "
                         f"{base.label}.")
    return notes
