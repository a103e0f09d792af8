"""What a sweep still has to do: each cell's resolved config, and whether a run of it exists.

A cell is *done* when a finished run under the runs root has the same resolved config (locations
aside, and settings added to crsbench since filled with their defaults) and the same data
fingerprint; it is *resumable* when such a run was interrupted, its process died, or it failed only
for a full disk (the sweep continues it with --resume); it is *running* when such a run's process is
alive (another sweep or `crsbench run` has it: this sweep does not start it twice); else it is *to do*. A cell whose `init_from` row has no finished run
for the same dataset and seed waits for it. A dependent cell counts as done when it started from any
counting run of its source cell; a new one starts from the newest such run that still has its weights
(`model.pt`). When none has (runs restored from a records archive keep their results, not their
weights), the source cell is trained again first: its seed's run repeats (tests/test_init_from.py).

With `same_build`, a run counts only if it started (and resumed) on the preprocessing build this code
makes of the data (run.json's `data.content`): after a fix to preprocessing that kept the raw files,
and so the fingerprint, the cells trained on an older build are run again (a run that predates the
content record counts as another build).

The plan is made once, when the sweep starts; just before starting a cell, the driver asks
`started_elsewhere` whether another process (a second sweep of the same file) has finished or started
it since, so two sweeps side by side do not train one cell twice.

A finished run that a since-fixed defect could have changed (`crsbench/results/fixed_defects.py`) is
not done either: its cell is run again, and an interrupted such run is started afresh, not resumed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from crsbench.config.loader import LOCATION_SETTINGS, fill_defaults
from crsbench.datasets.provenance import keyed_settings
from crsbench.errors import CrsbenchError, StorageError
from crsbench.results.fixed_defects import defects_of
from crsbench.run_dir import (FAILED, FINISHED, INTERRUPTED, RUNNING as RUN_ALIVE, STALE, RunDir, made_on_build,
                              shown_status)
from crsbench.sweep.spec import Cell, Row, Sweep, cells

DONE, RESUME, TODO, WAIT, RUNNING = "done", "resume", "to do", "waits", "running"


@dataclass
class CellPlan:
    cell: Cell
    row: Row
    status: str
    run_dir: Path | None = None                 # the finished (or resumable) run
    overrides: list[str] = field(default_factory=list)
    config: dict | None = None
    redoes: Path | None = None                  # the latest finished (or alive) run of this cell that does not count
    redo_reason: str = ""                       # why: another preprocessing build, a fixed defect, no weights
    needs_weights_of: Cell | None = None        # waits: its source cell's runs have no weights to start from


def _comparable(config: dict, defaults: dict | None = None) -> dict:
    """The config without its locations (and with today's defaults filling what an older run lacks)."""
    out = copy.deepcopy(config)
    if defaults is not None:
        fill_defaults(defaults, out)
    for setting in LOCATION_SETTINGS:
        section, key = setting.split(".")
        out.get(section, {}).pop(key, None)
    out.get("run", {}).pop("init_from", None)          # compared through the source cell instead
    return out


def _out_of_space(status: str, meta: dict) -> bool:
    """A run that failed only because the disk filled (`StorageError`): its checkpoint is intact, so
    it resumes like an interrupted one once space is freed; other failures start the cell afresh."""
    return status == FAILED and str(meta.get("error") or "").startswith(f"{StorageError.__name__}:")


class Planner:
    """Resolves cells and finds their runs; caches data fingerprints and run listings."""

    def __init__(self, sweep: Sweep, data_dir: str | None = None, same_build: bool = False) -> None:
        self.sweep, self.data_dir, self.same_build = sweep, data_dir, same_build
        self._fingerprints: dict[tuple, str] = {}
        from crsbench.datasets.loader import CurrentBuilds
        self.builds = CurrentBuilds(data_dir)
        self._runs: dict[Path, list[tuple[RunDir, dict, dict]]] = {}
        self._counted: dict[Cell, list[Path]] = {}      # every finished run that counts for a cell, oldest first
        self._alive: dict[Cell, Path] = {}              # a counting run of the cell that another process runs
        self._retraining: dict[Cell, Path] = {}         # a resumable run of a done cell, newer than its finished ones
        self._first_listed: dict[Path, set[Path]] = {}  # the runs each listing held when first made

    def overrides(self, row: Row, cell: Cell, source: Path | None) -> list[str]:
        out = list(row.overrides) + [f"run.tag={row.tag}"]
        if self.sweep.output_dir:
            out.append(f"run.output_dir={self.sweep.output_dir}")
        if source is not None:
            out.append(f"run.init_from={source}")
        return out

    def resolve(self, row: Row, cell: Cell, source: Path | None) -> tuple[list[str], dict]:
        from crsbench.runner import prepare_config
        overrides = self.overrides(row, cell, source)
        config, _ = prepare_config(row.model, cell.dataset, None, overrides, self.data_dir, cell.seed,
                                   protocol=row.protocol)
        return overrides, config

    def fingerprint(self, dataset: str, data: dict) -> str:
        from crsbench.datasets.loader import dataset_spec
        key = (dataset, repr(sorted(keyed_settings(data).items())))
        if key not in self._fingerprints:
            self._fingerprints[key] = dataset_spec(dataset, data, self.data_dir).data_version().fingerprint
        return self._fingerprints[key]

    def content(self, dataset: str, data: dict) -> str:
        """The content digest of this code's preprocessing build of the data (built if not cached)."""
        return self.builds.content(dataset, data)

    def _candidates(self, root: Path, dataset: str, model: str) -> list[tuple[RunDir, dict, dict]]:
        """(run, meta, config) of every readable run of a model on a dataset, newest last."""
        key = root / dataset
        if key not in self._runs:
            found = []
            for run in sorted(key.glob("*/*/run.json")):
                try:
                    meta = RunDir(run.parent).read_meta()
                    found.append((RunDir(run.parent), meta, RunDir(run.parent).read_config()))
                except CrsbenchError:
                    continue
            self._runs[key] = found
            self._first_listed.setdefault(key, {run.path for run, _, _ in found})
        return [c for c in self._runs[key] if c[1].get("model") == model]

    def forget(self, root: Path, dataset: str) -> None:
        self._runs.pop(root / dataset, None)

    def started_elsewhere(self, plan: CellPlan) -> CellPlan | None:
        """The cell's plan if another process (a second sweep of the same file, a SLURM array task) has
        finished it, or is running it, since this planner first listed the runs: DONE or RUNNING with
        that run, so the driver does not train the cell twice. None when no such run has appeared."""
        root = Path(plan.config["run"]["output_dir"]).resolve()
        key = root / plan.cell.dataset
        self.forget(root, plan.cell.dataset)
        fingerprint = self.fingerprint(plan.cell.dataset, plan.config["data"])
        new = [(run, meta) for run, meta, _ in self._runs_of(plan.row, plan.cell, plan.config)
               if run.path not in self._first_listed.get(key, set())]
        for run, meta in reversed(new):                  # the newest first
            status = shown_status(meta)
            if status == FINISHED and (meta.get("data") or {}).get("fingerprint") == fingerprint:
                return CellPlan(plan.cell, plan.row, DONE, run.path, plan.overrides, plan.config)
            if status == RUN_ALIVE:
                return CellPlan(plan.cell, plan.row, RUNNING, run.path, plan.overrides, plan.config)
        return None

    def _runs_of(self, row: Row, cell: Cell, config: dict) -> Iterator[tuple[RunDir, dict, dict]]:
        """(run, meta, saved config) of every run with the cell's resolved config on its data (same
        fingerprint, or none recorded), whatever source run it started from; oldest first."""
        from crsbench.config.loader import resolve_config
        from crsbench.registry import get_dataset, get_model
        defaults = resolve_config(get_model(row.model), get_dataset(cell.dataset))
        wanted = _comparable(config)
        fingerprint = self.fingerprint(cell.dataset, config["data"])
        root = Path(config["run"]["output_dir"]).resolve()
        for run, meta, saved in self._candidates(root, cell.dataset, row.model):
            if (meta.get("data") or {}).get("fingerprint") in (fingerprint, None) \
                    and _comparable(saved, defaults) == wanted:
                yield run, meta, saved

    def plan(self, cell: Cell, done: dict[Cell, Path]) -> CellPlan:
        """Where one cell stands, given the run dirs of the cells already done."""
        row = self.sweep.row(cell.row)
        self._alive.pop(cell, None)
        self._retraining.pop(cell, None)
        source, accepted, source_cell = None, set(), None
        if row.init_from is not None:
            source_cell = Cell(row.init_from, cell.dataset, cell.seed)
            source = done.get(source_cell)
            if source is None:
                earlier = self._earlier_run(row, cell)
                return CellPlan(cell, row, WAIT, redoes=earlier,
                                redo_reason=f"{source_cell.label} is trained first" if earlier else "")
            sources = [*self._counted.get(source_cell, []), Path(source)]
            accepted = {p.resolve() for p in sources}
            source = next((p for p in reversed(sources) if RunDir(p).weights.exists()), None)
        overrides, config = self.resolve(row, cell, source)
        fingerprint = self.fingerprint(cell.dataset, config["data"])
        build = self.content(cell.dataset, config["data"]) if self.same_build else None
        best: CellPlan | None = None
        redoes, redo_reason = None, ""
        counted: list[Path] = []
        other_source: Path | None = None            # a finished run of these settings from a source run that does not count
        for run, meta, saved in self._runs_of(row, cell, config):
            data = meta.get("data") or {}
            if source_cell is not None and Path(str(saved["run"].get("init_from"))).resolve() not in accepted:
                if shown_status(meta) == FINISHED:
                    other_source = run.path
                continue
            status = shown_status(meta)
            why = ""
            if build is not None and not made_on_build(meta, build):
                why = "another preprocessing build"
            elif defects := defects_of(meta, saved):
                why = "made before the fix of " + ", ".join(f"{d.name} ({d.commit[:7]})" for d in defects)
            if why:
                if status in (FINISHED, RUN_ALIVE):      # an alive one is named so its user can stop it
                    redoes = run.path
                    redo_reason = why + ("; still running, and it will not count" if status == RUN_ALIVE else "")
                continue
            if status == FINISHED and data.get("fingerprint") == fingerprint:
                best = CellPlan(cell, row, DONE, run.path, overrides, config)
                counted.append(run.path)
                self._retraining.pop(cell, None)
            elif status == RUN_ALIVE:
                self._alive[cell] = run.path
                if best is None or best.status != DONE:
                    best = CellPlan(cell, row, RUNNING, run.path, overrides, config)
            elif status in (INTERRUPTED, STALE) or _out_of_space(status, meta):
                if best is None or best.status not in (DONE, RUNNING):
                    best = CellPlan(cell, row, RESUME, run.path, overrides, config)
                elif best.status == DONE:               # a re-training for weights, cut off: it resumes
                    self._retraining[cell] = run.path
        self._counted[cell] = counted
        if best is None and source_cell is not None and source is None:
            return CellPlan(cell, row, WAIT, redo_reason=f"{source_cell.label}: its run {done[source_cell]} has no "
                            f"weights ({RunDir.WEIGHTS}) to start from", needs_weights_of=source_cell)
        if redoes is None and other_source is not None:
            redoes, redo_reason = other_source, f"it started from a run of {source_cell.label} that does not count"
        return best or CellPlan(cell, row, TODO, None, overrides, config, redoes, redo_reason)

    def _earlier_run(self, row: Row, cell: Cell) -> Path | None:
        """The newest finished run of a waiting cell's settings, whatever it started from: what the cell
        will re-do once its source is trained, and what `estimate` charges for it."""
        _, config = self.resolve(row, cell, None)
        fingerprint = self.fingerprint(cell.dataset, config["data"])
        finished = [run.path for run, meta, _ in self._runs_of(row, cell, config)
                    if shown_status(meta) == FINISHED and (meta.get("data") or {}).get("fingerprint") == fingerprint]
        return finished[-1] if finished else None

    def plan_all(self) -> list[CellPlan]:
        """Every cell's plan, sources first (a dependent cell sees its source's finished run)."""
        done: dict[Cell, Path] = {}
        plans = []
        for cell in cells(self.sweep):
            plan = self.plan(cell, done)
            if plan.status == DONE:
                done[cell] = plan.run_dir
            plans.append(plan)
        return self._retrain_for_weights(plans)

    def _retrain_for_weights(self, plans: list[CellPlan]) -> list[CellPlan]:
        """A source cell whose finished runs have no weights, while a dependent cell still has to start
        from them, is to do again (its dependents wait for the new run), running where another
        process already trains it again, or resumed where such a re-training was cut off (a stopped
        sweep, a machine that went away). A source that itself starts from a weightless run is not
        chased further: its run then fails, naming the missing file."""
        index = {p.cell: i for i, p in enumerate(plans)}
        for plan in plans:
            i = index.get(plan.needs_weights_of) if plan.needs_weights_of else None
            if i is None or plans[i].status != DONE:
                continue
            old = plans[i]
            alive, cut_off = self._alive.get(old.cell), self._retraining.get(old.cell)
            status = RUNNING if alive else RESUME if cut_off else TODO
            plans[i] = CellPlan(old.cell, old.row, status, alive or cut_off, old.overrides, old.config,
                                redoes=old.run_dir,
                                redo_reason=f"no weights ({RunDir.WEIGHTS}), and {plan.cell.label} starts from them")
        return plans
