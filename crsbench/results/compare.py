"""One table of the stored results of a dataset: rows = (model, tag, protocol, data fingerprint),
columns = metrics per protocol view, cells = mean ± sample std over seeds.

Per seed, each metric comes from the latest finished run that has it, so a recommendation-only run
and a later conversation-only run of the same model and seed (run.tasks, run.init_from) fill one
row; a cell with fewer seeds than its row says so. By default only runs on the data version the
data directory holds now are shown (a note says how many others were left out); runs on different
data, or under different protocols, are never merged into one row. With a baseline row, each cell
gets the p-values of crsbench/results/significance.py against it (row_tests.py).
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Sequence

from crsbench.datasets.instances import VIEWS
from crsbench.errors import CrsbenchError
from crsbench.results.fixed_defects import defects_of_run
from crsbench.results.store import ResultStore
from crsbench.run_dir import RunDir

if TYPE_CHECKING:
    from crsbench.datasets.loader import CurrentBuilds

GEN_VIEW = "gen"
VIEW_ORDER = (*VIEWS, GEN_VIEW)
DEFAULT_REC = ("recall@1", "recall@10", "recall@50")
DEFAULT_GEN = ("dist@2", "dist@3", "dist@4", "item_ratio", "item_share", "item_distinct", "bleu@2", "ppl")
ALPHA = 0.05
PAIRED_MARK, WELCH_MARK = "*", "†"


@dataclass
class Cell:
    """One metric of one row: its per-seed values and the runs they came from."""

    values: list[float]
    runs: list[str]                    # run dir per value (same order)
    seeds: list[int] = field(default_factory=list)   # seed per value (same order)
    p_paired: float | None = None      # against the baseline, over instances, on the seeds both rows have
    paired_seeds: list[int] | None = None   # the seeds that paired test used (None: all, unmatched)
    p_welch: float | None = None       # against the baseline, over seeds
    ci: tuple[float, float] | None = None   # 95 % bootstrap interval (corpus-level metrics)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


def row_label(model: str, tag: str | None) -> str:
    """How a model and its variant tag are named in tables and figures: "kgsf -MIM", "kbrd"."""
    return model + (f" {tag}" if tag else "")


@dataclass
class Row:
    model: str
    tag: str
    protocol: str
    data: str                          # data fingerprint
    seeds: int
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return row_label(self.model, self.tag)


@dataclass
class ComparisonTable:
    dataset: str
    split: str
    columns: list[str]                                    # "view/metric"
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    baseline: Row | None = None
    show_data: bool = False
    show_protocol: bool = False

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)

    def _lead(self, row: Row) -> list[str]:
        lead = [row.label]
        if self.show_protocol:
            lead.append(row.protocol)
        if self.show_data:
            lead.append(row.data[:10])
        return lead + [str(row.seeds)]

    def _text(self, row: Row, column: str) -> str:
        cell = row.cells.get(column)
        if cell is None:
            return "–"
        text = f"{cell.mean:.4f}" if cell.std is None else f"{cell.mean:.4f} ± {cell.std:.4f}"
        if cell.ci is not None:
            text += f" [{cell.ci[0]:.4f}, {cell.ci[1]:.4f}]"
        marks = ""
        if cell.p_paired is not None and cell.p_paired < ALPHA:
            marks += PAIRED_MARK
        if cell.p_welch is not None and cell.p_welch < ALPHA:
            marks += WELCH_MARK
        text += marks
        return text if len(cell.values) == row.seeds else f"{text} (n={len(cell.values)})"

    def to_markdown(self) -> str:
        header = ["model"] + (["protocol"] if self.show_protocol else []) + (["data"] if self.show_data else [])
        header += ["seeds"] + self.columns
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            lines.append("| " + " | ".join(self._lead(row) + [self._text(row, c) for c in self.columns]) + " |")
        if not self.rows:
            lines.append(f"| (no finished runs for dataset '{self.dataset}') |")
        notes = list(self.notes)
        if self.baseline is not None:
            notes.append(f"{PAIRED_MARK}: differs from {self.baseline.label} at p < {ALPHA} (two-sided paired test over "
                         f"the instances both scored, on the seeds both rows have); {WELCH_MARK}: Welch's t-test over seeds "
                         f"p < {ALPHA}. p-values in --csv.")
        return "\n".join(lines + [f"\n{n}" if i == 0 else n for i, n in enumerate(notes)])

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        parts = ("mean", "std", "n", "p_paired", "p_welch", "ci_low", "ci_high")
        writer.writerow(["model", "protocol", "data", "seeds"] + [f"{c} {p}" for c in self.columns for p in parts])
        for row in self.rows:
            values: list[str] = []
            for column in self.columns:
                cell = row.cells.get(column)
                if cell is None:
                    values += [""] * len(parts)
                    continue
                ci = cell.ci or (None, None)
                values += [_num(cell.mean), _num(cell.std), str(len(cell.values)), _num(cell.p_paired),
                           _num(cell.p_welch), _num(ci[0]), _num(ci[1])]
            writer.writerow([row.label, row.protocol, row.data, row.seeds] + values)
        return out.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def _column_key(column: str) -> tuple:
    view, _, metric = column.partition("/")
    return (VIEW_ORDER.index(view) if view in VIEW_ORDER else len(VIEW_ORDER), view, metric)


def compare(store: ResultStore, dataset: str, split: str = "test", metrics: Sequence[str] | None = None,
            data_version: str | None = None,
            keep: Callable[[tuple[str, str, str, str]], bool] | None = None,
            skip_fixed: bool = False, seeds: Collection[int] | None = None,
            builds: CurrentBuilds | None = None) -> ComparisonTable:
    """Build the table. `metrics` names metrics without view (e.g. recall@10); default recall@1/10/50
    for every view plus the main generation metrics when present. `data_version` (the hash of the
    raw files) keeps only runs on that data; None keeps all and shows the data column. `keep`, given
    a row's (model, tag, protocol, data fingerprint), says whether its runs belong in the table (a
    sweep's rows), so the notes speak of those runs only. `skip_fixed` leaves out the runs that a
    since-fixed defect could have changed (figures do; the table only notes them). `seeds` keeps only
    those seeds' runs; `builds` keeps only the runs made on the preprocessing build this code makes of
    their data (`--same-build`: conversation scores depend on the word vectors the build holds)."""
    latest: dict[tuple, dict[str, tuple[float, str, str]]] = {}     # metric -> (value, run dir, run id)
    other_data = 0
    skipped: list[str] = []
    superseded: set[str] = set()         # runs a later run of the same row and seed overrode (other values)
    other_builds = 0
    for run in store.runs(dataset=dataset):                       # oldest first: later runs win
        if run["status"] != "finished" or (seeds is not None and run["seed"] not in seeds):
            continue
        if data_version is not None and run["data_version"] != data_version:
            other_data += 1
            continue
        if keep is not None and not keep((run["model"], run["tag"], run["protocol"], run["data_fingerprint"])):
            continue
        if builds is not None and not _on_build(builds, run["run_dir"]):
            other_builds += 1
            continue
        if skip_fixed and defects_of_run(run["run_dir"]):
            skipped.append(run["run_dir"])
            continue
        key = (run["model"], run["tag"], run["protocol"], run["data_fingerprint"], run["seed"])
        found = latest.setdefault(key, {})
        for name, value in store.metrics(run["run_id"]).items():
            if name in found and found[name][2] != run["run_id"] and found[name][0] != value:
                superseded.add(found[name][2])
            found[name] = (value, run["run_dir"], run["run_id"])
    wanted = set(metrics) if metrics else set(DEFAULT_REC) | set(DEFAULT_GEN)
    rows: dict[tuple, Row] = {}
    columns: set[str] = set()
    prefix = f"{split}/"
    for (model, tag, protocol, data, seed), found in latest.items():
        row = rows.setdefault((model, tag, protocol, data), Row(model, tag, protocol, data, 0))
        row.seeds += 1
        for name, (value, run_dir, _) in found.items():
            if not name.startswith(prefix):
                continue
            column = name[len(prefix):]
            if column.rpartition("/")[2] in wanted:
                cell = row.cells.setdefault(column, Cell([], []))
                cell.values.append(value)
                cell.runs.append(run_dir)
                cell.seeds.append(seed)
                columns.add(column)
    table = ComparisonTable(dataset, split, sorted(columns, key=_column_key),
                            [rows[k] for k in sorted(rows)])
    table.show_data = data_version is None or len({r.data for r in table.rows}) > 1
    table.show_protocol = len({r.protocol for r in table.rows}) > 1
    if other_data:
        table.notes.append(f"{other_data} finished run(s) on other data versions left out (--all-data shows them).")
    if other_builds:
        table.notes.append(f"{other_builds} finished run(s) left out as not made on the preprocessing build this "
                           "code makes (another build, one from before builds were recorded, or an unreadable "
                           "record); without --same-build they are shown.")
    if superseded:
        table.notes.append(f"{len(superseded)} earlier run(s) replaced by a later run of the same row and seed with "
                           f"other results (each seed shows its latest run; `crsbench runs` lists them all).")
    if skipped:
        table.notes.append(f"{len(skipped)} run(s) left out, made before the fix of a defect that could have "
                           f"changed them (crsbench/results/fixed_defects.py), e.g. {skipped[0]}; a sweep "
                           "re-runs them (`crsbench sweep FILE`).")
    table.notes.extend(_mixed_builds(table.rows))
    table.notes.extend(_before_fixes(table.rows))
    return table


def _on_build(builds: CurrentBuilds, run_dir: str) -> bool:
    try:
        return builds.made(RunDir(Path(run_dir)))
    except (CrsbenchError, OSError):
        return False


def _before_fixes(rows: Sequence[Row]) -> list[str]:
    """A note per row with runs that a defect fixed since could have changed (`fixed_defects.py`)."""
    notes = []
    for row in rows:
        exposed: dict[str, list[str]] = {}
        for run in sorted({run for cell in row.cells.values() for run in cell.runs}):
            for defect in defects_of_run(run):
                exposed.setdefault(f"{defect.name} ({defect.commit[:7]}: {defect.summary})", []).append(run)
        for defect, runs in exposed.items():
            notes.append(f"{row.label}: {len(runs)} run(s) made before the fix of {defect}, e.g. {runs[0]}; "
                         "a sweep re-runs them (`crsbench sweep FILE`).")
    return notes


def content_of(run_dir: str) -> str | None:
    """The preprocessed content digest a run started on (run.json), None where unknown."""
    try:
        return (RunDir(Path(run_dir)).read_meta().get("data") or {}).get("content") or None
    except (CrsbenchError, OSError):
        return None


def _mixed_builds(rows: Sequence[Row]) -> list[str]:
    """A note per row whose runs started on different preprocessing builds of the same data (the
    preprocessing code changed between them: say, other word2vec embeddings), which a seed's spread
    would otherwise silently include."""
    notes = []
    for row in rows:
        runs = {run for cell in row.cells.values() for run in cell.runs}
        contents = [content_of(run) for run in runs]
        builds = sorted({c for c in contents if c})
        unknown = sum(c is None for c in contents)
        if len(builds) > 1 or (builds and unknown):
            what = (f"{len(builds)} preprocessing builds of the same data" if len(builds) > 1
                    else "one preprocessing build") + f" (content {', '.join(b[:10] for b in builds)})"
            if unknown:
                what += f", and {unknown} run(s) predate the content record, so their build is unknown"
            notes.append(f"{row.label}: its runs started on {what}; scores that depend on the word embeddings "
                         "(conversation models, TextCNN) may differ by build as well as by seed "
                         "(`crsbench sweep FILE --same-build` re-runs the cells of other builds).")
    return notes
