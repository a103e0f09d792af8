"""How long the rest of a sweep will take, from the runs it already finished: what `--dry-run` prints
so that a user can plan compute before starting (or resuming) a long sweep.

A cell's estimate is the median compute time of its row's finished cells on the same dataset (other
seeds); a cell to resume is charged what is left of that after the epochs its run already trained.
A cell that re-does a run of an older preprocessing build (`sweep --same-build`) costs what that run
cost. A row with no finished cell borrows, marked as such, the median of the finished cells of the sweep's
rows of the same kind (model, dataset, protocol, tasks, training fraction and epoch settings: an ablation of KGSF's
conversation stage costs about what KGSF's does); with none of those either, it has no estimate.
The times are those of the machine the runs ran on; given the kind of device the sweep will use
(`cpu` or `cuda`), only runs made on that kind lend their times (a GPU's records say nothing of a CPU).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from crsbench.errors import DataError
from crsbench.results.history import read_history
from crsbench.run_dir import RunDir
from crsbench.sweep.plan import DONE, RESUME, RUNNING, CellPlan


def finished_seconds(run_dir: Path) -> float | None:
    """Compute time of a finished run: every stage's training seconds (summed over resumes, as its
    stages record them) plus loading and scoring; None when the run does not record them."""
    try:
        metrics = RunDir(run_dir).read_metrics()
    except DataError:
        return None
    stages = (metrics.get("training") or {}).get("stages") or []
    timings = metrics.get("timings") or {}
    if not stages and "total_s" not in timings:
        return None
    if not stages:
        return float(timings["total_s"])
    return sum(float(s.get("seconds", 0.0)) for s in stages) + float(timings.get("data_s", 0.0)) \
        + float(timings.get("eval_s", 0.0))


def made_on(run_dir: Path, device: str | None) -> bool:
    """Whether a run ran on this kind of device (`cpu`, `cuda`); True without a device to match or a
    record of the run's."""
    if device is None:
        return True
    try:
        recorded = str((RunDir(run_dir).read_meta().get("environment") or {}).get("device") or "")
    except DataError:                       # no or unreadable run.json: the times still stand
        return True
    return not recorded or recorded.split(":")[0] == device


def trained_seconds(run_dir: Path) -> float:
    """Training seconds an unfinished run has already spent (its finished epochs)."""
    try:
        return sum(float(h.get("seconds", 0.0)) for h in read_history(run_dir))
    except DataError:
        return 0.0


@dataclass
class Estimate:
    seconds: dict[int, float]          # index into the plans -> estimated seconds still to spend
    unknown: list[int]                 # cells to run whose row has no finished cell, nor a row of its kind
    borrowed: set[int] = field(default_factory=set)   # estimated from rows of the same kind

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def kind(plan: CellPlan) -> tuple | None:
    """What a cell's cost mostly depends on: model, dataset, protocol, and its tasks, training
    fraction and epoch settings (the last value of each in the row's overrides); None without a row."""
    if plan.row is None:
        return None
    settings = {}
    for override in plan.row.overrides:
        key, _, value = override.partition("=")
        if key in ("run.tasks", "data.train_fraction") or key.endswith(".epochs"):
            settings[key] = value.replace(" ", "")
    return plan.row.model, plan.cell.dataset, plan.row.protocol, tuple(sorted(settings.items()))


def estimate(plans: list[CellPlan], known: list[CellPlan] | None = None, device: str | None = None) -> Estimate:
    """Seconds still to spend on each cell this sweep would run (not done, not running elsewhere);
    `known`: the plans of the whole sweep file when `plans` is a part of it (--rows, --seeds), so the
    part learns from the finished cells outside it too; `device`: learn only from runs on that kind."""
    done: dict[tuple[str, str], list[float]] = {}
    of_kind: dict[tuple, list[float]] = {}
    seen = {p.cell for p in plans}
    for p in plans + [k for k in known or [] if k.cell not in seen]:
        timed = p.run_dir if p.status == DONE else p.redoes       # a run that does not count still took its time
        if timed is not None and made_on(timed, device):
            seconds = finished_seconds(timed)
            if seconds is not None:
                done.setdefault((p.cell.row, p.cell.dataset), []).append(seconds)
                if (k := kind(p)) is not None:
                    of_kind.setdefault(k, []).append(seconds)
    out = Estimate({}, [])
    for i, p in enumerate(plans):
        if p.status in (DONE, RUNNING):
            continue
        if p.redoes is not None and made_on(p.redoes, device) and (own := finished_seconds(p.redoes)) is not None:
            out.seconds[i] = own
            continue
        known = done.get((p.cell.row, p.cell.dataset))
        if not known and (known := of_kind.get(kind(p))):
            out.borrowed.add(i)
        if not known:
            out.unknown.append(i)
            continue
        left = statistics.median(known)
        if p.status == RESUME and p.run_dir is not None:
            left = max(0.0, left - trained_seconds(p.run_dir))
        out.seconds[i] = left
    return out


def duration(seconds: float) -> str:
    """e.g. 3h05m, 24m, 0m."""
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
