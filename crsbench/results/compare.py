"""One table of every stored result for a dataset: rows = models (and tagged variants), columns =
metrics per protocol view, cells = mean ± sample std over seeds. Per seed, each metric comes from the
latest finished run that has it, so a recommendation-only run and a later conversation-only run of the
same model and seed (run.tasks, run.init_from) fill one row; a cell with fewer seeds than its row says so."""
from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from typing import Sequence

from crsbench.results.store import ResultStore

VIEW_ORDER = ("all", "dedup", "cold_start", "gen")
DEFAULT_REC = ("recall@1", "recall@10", "recall@50")
DEFAULT_GEN = ("dist@2", "dist@3", "dist@4", "item_ratio", "bleu@2", "ppl")


@dataclass
class ComparisonTable:
    dataset: str
    split: str
    columns: list[str]                                    # "view/metric"
    rows: list[dict] = field(default_factory=list)        # {"model", "seeds", "cells": {col: (mean, std, n)}}

    def to_markdown(self) -> str:
        header = ["model", "seeds"] + self.columns
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = []
            for col in self.columns:
                if col not in row["cells"]:
                    cells.append("–")
                    continue
                mean, std, n = row["cells"][col]
                text = f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"
                cells.append(text if n == row["seeds"] else f"{text} (n={n})")
            lines.append("| " + " | ".join([row["model"], str(row["seeds"])] + cells) + " |")
        if not self.rows:
            lines.append(f"| (no finished runs for dataset '{self.dataset}') |")
        return "\n".join(lines)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["model", "seeds"] + [f"{c} {part}" for c in self.columns for part in ("mean", "std")])
        for row in self.rows:
            values = []
            for col in self.columns:
                mean, std, _ = row["cells"].get(col, (None, None, 0))
                values += ["" if mean is None else f"{mean:.6f}", "" if std is None else f"{std:.6f}"]
            writer.writerow([row["model"], row["seeds"]] + values)
        return out.getvalue()


def _column_key(column: str) -> tuple:
    view, _, metric = column.partition("/")
    return (VIEW_ORDER.index(view) if view in VIEW_ORDER else len(VIEW_ORDER), view, metric)


def compare(store: ResultStore, dataset: str, split: str = "test",
            metrics: Sequence[str] | None = None) -> ComparisonTable:
    """Build the table; `metrics` names metrics without view (e.g. recall@10), default recall@1/10/50
    for every view plus the main generation metrics when present."""
    latest: dict[tuple[str, str, int], dict[str, float]] = {}
    for run in store.runs(dataset=dataset):                       # oldest first: later runs win
        if run["status"] == "finished":
            latest.setdefault((run["model"], run["tag"], run["seed"]), {}).update(store.metrics(run["run_id"]))
    wanted = set(metrics) if metrics else set(DEFAULT_REC) | set(DEFAULT_GEN)
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    seeds: dict[tuple[str, str], int] = {}
    columns: set[str] = set()
    prefix = f"{split}/"
    for (model, tag, _seed), found in latest.items():
        key = (model, tag)
        seeds[key] = seeds.get(key, 0) + 1
        for name, value in found.items():
            if not name.startswith(prefix):
                continue
            column = name[len(prefix):]
            if column.rpartition("/")[2] in wanted:
                values.setdefault(key, {}).setdefault(column, []).append(value)
                columns.add(column)
    table = ComparisonTable(dataset, split, sorted(columns, key=_column_key))
    for key in sorted(values):
        cells = {}
        for column, found in values[key].items():
            cells[column] = (statistics.fmean(found), statistics.stdev(found) if len(found) > 1 else None,
                             len(found))
        label = key[0] + (f" {key[1]}" if key[1] else "")
        table.rows.append({"model": label, "seeds": seeds[key], "cells": cells})
    return table
