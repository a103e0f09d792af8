"""`crsbench sweep FILE`: plan the cells, run what is missing on an executor, index the results,
print the comparison table of the sweep's rows.

The driver alone writes the results index, for every cell that finishes (one that ends just as a
stop comes too), and at its start for any finished cell the index lacks. Progress is one line per
event (a cell started, finished or failed) and a summary line (done / running / failed / to do,
elapsed time) every half minute.
A failed cell is reported with its log and does not stop the others; the cells that start from it
(init_from) are skipped. Interrupted cells resume before new ones start. Interrupted (Ctrl-C), the
driver stops its workers, whose runs are marked interrupted; running the same command again resumes
them and skips every finished cell. With a deadline (`deadline.py`) a cell starts only if its estimate
fits before it, and at the deadline the running cells are stopped the same way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from loguru import logger

from crsbench.results.significance import RESAMPLES, SEED
from crsbench.results.store import RESULTS_DB, record_finished, results_db
from crsbench.run_dir import RunDir
from crsbench.sweep.deadline import FILL_MIN_S, fits, may_fill, schedule
from crsbench.sweep.estimate import duration, estimate
from crsbench.sweep.executors import Outcome, Task
from crsbench.sweep.plan import DONE, RESUME, RUNNING, TODO, WAIT, CellPlan, Planner
from crsbench.sweep.spec import Cell, Sweep

REPORT_EVERY_S = 30.0


def start_order(plans: list[CellPlan]) -> Callable[[CellPlan], tuple]:
    """The sort key of the cells to start: interrupted ones first (half their compute is spent, and
    their results are the nearest), then the new ones in the sweep's order (seed by seed,
    `spec.cells`). A cell that waited for its init_from cell takes its place in that order when it
    joins the queue, so seed 2's dependents start before seed 3's rows."""
    rank = {p.cell: i for i, p in enumerate(plans)}
    return lambda p: (p.status != RESUME, rank[p.cell])


def run_order(plans: list[CellPlan]) -> list[CellPlan]:
    """The cells to start now, in `start_order`; cells waiting for their init_from cell join later."""
    return sorted((p for p in plans if p.status in (RESUME, TODO)), key=start_order(plans))


@dataclass
class SweepReport:
    done: list[Cell] = field(default_factory=list)          # finished before or during this sweep
    ran: list[Cell] = field(default_factory=list)           # finished during this sweep
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    skipped: list[tuple[Cell, str]] = field(default_factory=list)
    seconds: float = 0.0


def _wall_seconds(plans: list[CellPlan], guess, workers: int) -> float:
    """How long the estimated cells take on `workers` workers in the driver's order (a source before
    its dependents), not their total over the workers: one long cell keeps its length on any number.
    Cells without an estimate count as none (the listing counts them apart)."""
    needs = {p.cell: guess.seconds.get(i, 0.0) for i, p in enumerate(plans)}
    verdicts = schedule(plans, needs, workers, 0.0, float("inf"))
    return max((t for kind, t in verdicts.values() if kind == "finishes"), default=0.0)


def describe_plan(plans: list[CellPlan], workers: int = 1, known: list[CellPlan] | None = None,
                  deadline: datetime | None = None, device: str | None = None, fill: bool = False) -> str:
    """The --dry-run listing: one line per cell with its status, the time it should still take
    (from its row's finished seeds, `estimate.py`; `known`: the whole file's plans when these are a
    part of it) and its run dir; then the counts and the total. With a deadline, each cell to run
    also says when it would finish, or that it would not start (`deadline.schedule`). `device`: the
    kind the sweep would run on; only runs made on it lend their times. `fill`: as `run_sweep`'s."""
    guess = estimate(plans, known, device)
    verdicts = {}
    if deadline is not None:
        needs = {plans[i].cell: seconds for i, seconds in guess.seconds.items()}
        verdicts = schedule(plans, needs, workers, time.time(), deadline.timestamp(), fill)
    width = max(len(p.cell.label) for p in plans)
    lines = []
    for i, p in enumerate(plans):
        where = f"  {p.run_dir}" if p.run_dir else ""
        if p.redoes is not None:
            where = (f"  {p.run_dir}," if p.run_dir else "") + f"  re-does {p.redoes} ({p.redo_reason})"
        elif p.needs_weights_of is not None:
            where = f"  for {p.redo_reason}"
        mark = "≈" if i in guess.borrowed else "~"
        left = f"{mark}{duration(guess.seconds[i])}" if i in guess.seconds else ("?" if i in guess.unknown else "")
        if p.cell in verdicts:
            kind, what = verdicts[p.cell]
            when = datetime.fromtimestamp(what).strftime("%H:%M") if kind != "not started" else what
            where = {"finishes": f"  by {when}", "stopped": f"  stopped at {when}",
                     "filled": f"  fills the time left, stopped at {when} (resumable)",
                     "not started": f"  not before the deadline: {when}"}[kind] + where
        lines.append(f"{p.cell.label:<{width}}  {p.status:<6} {left:>7}{where}")
    counts = {s: sum(p.status == s for p in plans) for s in (DONE, RESUME, RUNNING, TODO, WAIT)}
    redo = sum(p.redoes is not None for p in plans if p.status == TODO)
    lines.append(f"{len(plans)} cells: {counts[DONE]} done, {counts[RESUME]} to resume, {counts[TODO]} to do"
                 + (f" ({redo} of them re-do a run that does not count)" if redo else "")
                 + f", {counts[WAIT]} waiting for their init_from cell"
                 + (f", {counts[RUNNING]} running in another process" if counts[RUNNING] else ""))
    parts = []
    if guess.seconds:
        parts.append(f"~{duration(guess.total)} for {len(guess.seconds)} cell(s)"
                     + (f" (about {duration(_wall_seconds(plans, guess, workers))} with {workers} workers)"
                        if workers > 1 else "")
                     + (f", {len(guess.borrowed)} of them (≈) from other rows of the same model, tasks, data fraction and "
                        "epochs" if guess.borrowed else ""))
    if guess.unknown:
        parts.append(f"{len(guess.unknown)} cell(s) unknown (no finished seed of their row or kind yet)")
    if parts:
        lines.append("estimated compute still to spend: " + "; ".join(parts)
                     + "; from the finished cells' recorded times"
                     + (f" on {device}" if device else "") + ", on the machine that ran them")
    if deadline is not None:
        kinds = [kind for kind, _ in verdicts.values()]
        lines.append(f"before the deadline ({deadline:%Y-%m-%d %H:%M}, {workers} worker(s)): "
                     f"{kinds.count('finishes')} cell(s) finish, {kinds.count('stopped')} start without an estimate "
                     f"and would be stopped, "
                     + (f"{kinds.count('filled')} start to fill idle time and would be stopped, " if fill else "")
                     + f"{kinds.count('not started')} do not start")
    return "\n".join(lines)


def _task(plan: CellPlan, data_dir: str | None) -> Task:
    return Task(plan.cell.label, plan.row.model, plan.cell.dataset, plan.cell.seed, plan.overrides,
                plan.row.protocol, str(plan.run_dir) if plan.status == RESUME else None, data_dir)


def _materialise(outcome: Outcome, root: Path) -> Path:
    """The run dir on the driver's side: the worker's, or rebuilt from the shipped small files."""
    path = Path(outcome.run_dir)
    if path.exists() or not outcome.files:
        return path
    local = root / outcome.run_id
    local.mkdir(parents=True, exist_ok=True)
    for name, data in outcome.files.items():
        (local / name).write_bytes(data)
    RunDir(local).update_meta(runs_root=str(root), shipped_from=str(path))
    return local


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _refusal(need: float | None, deadline: datetime | None) -> str:
    """Why a cell may not start now ('' when it may; `deadline.fits` decides)."""
    now = time.time()
    if deadline is None or fits(now, need, deadline.timestamp()):
        return ""
    left = deadline.timestamp() - now
    if left <= 0:
        return f"the deadline ({deadline:%Y-%m-%d %H:%M}) has come"
    return f"needs ~{duration(need)}, {duration(left)} left before the deadline ({deadline:%H:%M})"


def _stop(executor, running: dict, why: str) -> list[tuple[CellPlan, Outcome]]:
    """Stop the running cells with a checkpoint each (Ctrl-C, SIGTERM or the deadline), saying why;
    returns what each reported (a cell may have finished in the meantime: its caller indexes it)."""
    logger.warning(why)
    by_label = {plan.cell.label: plan for plan in running.values()}
    stopped = []
    for outcome in executor.stop(list(running)):
        if outcome.status != "finished":
            logger.warning(f"{outcome.status}: {outcome.label} ({outcome.run_dir})")
        if outcome.label in by_label:
            stopped.append((by_label[outcome.label], outcome))
    return stopped


def _index_unrecorded(plans: list[CellPlan]) -> None:
    """Index every done cell's run that the results index lacks, as the driver would have on its
    finish (a driver stopped between a cell's end and its record leaves one)."""
    stores: dict[Path, object] = {}
    for plan in plans:
        if plan.status != DONE or plan.run_dir is None:
            continue
        run = RunDir(plan.run_dir)
        meta = run.read_meta()
        root = run.results_root(meta)
        if root not in stores:
            stores[root] = results_db(root)
        if stores[root].get_run(meta.get("run_id") or run.run_id()) is None:
            record_finished(run, meta, root)
            logger.info(f"indexed {plan.cell.label}: its finished run was missing from {root / RESULTS_DB} "
                        f"({plan.run_dir})")


def run_sweep(sweep: Sweep, executor, data_dir: str | None = None, same_build: bool = False,
              deadline: datetime | None = None, whole: Sweep | None = None, fill: bool = False) -> SweepReport:
    """Run every cell that is not done (with `same_build`, not done on this code's preprocessing
    build), starting only what fits before `deadline` and stopping what runs when it comes;
    returns what happened. `whole`: the full sweep file when `sweep` is a part of it (for estimates).
    `fill`: a worker left idle starts a cell that does not fit (in run order), and the deadline stops
    it with a checkpoint, for the next sweep to resume (for a machine whose disk is kept)."""
    planner = Planner(sweep, data_dir, same_build)
    plans = planner.plan_all()
    needs: dict[Cell, float] = {}            # estimates, read only when a deadline needs them
    if deadline is not None:
        known = Planner(whole, data_dir, same_build).plan_all() if whole is not None else None
        guess = estimate(plans, known, getattr(executor, "device_kind", None))
        needs = {plans[i].cell: seconds for i, seconds in guess.seconds.items()}
    _index_unrecorded(plans)
    report = SweepReport(done=[p.cell for p in plans if p.status == DONE])
    finished: dict[Cell, Path] = {p.cell: p.run_dir for p in plans if p.status == DONE}
    queue, in_order = run_order(plans), start_order(plans)
    waiting = [p for p in plans if p.status == WAIT]
    deferred: list[tuple[CellPlan, str]] = []    # --fill: cells that do not fit (and why), for idle workers
    for p in plans:
        if p.status == RUNNING:
            report.skipped.append((p.cell, f"running in another process ({p.run_dir})"))
            logger.warning(f"not starting {p.cell.label}: another process is running it ({p.run_dir}); "
                           f"run this sweep again once it has finished")
    running: dict = {}
    started = time.perf_counter()
    total = len(plans)
    logger.info(f"sweep {sweep.name}: {total} cells, {len(report.done)} done already, {len(queue)} to run, "
                f"{len(waiting)} waiting; executor {executor.name} with {executor.capacity} worker(s)"
                + (f", {executor.threads} CPU thread(s) each" if getattr(executor, "threads", None) else ""))
    last_report = time.perf_counter()

    def summary() -> str:
        return (f"[{_hms(time.perf_counter() - started)}] {len(report.done)}/{total} done, {len(running)} running, "
                f"{len(report.failed) + len(report.skipped)} failed or skipped, "
                f"{len(queue) + len(waiting) + len(deferred)} to do")

    def start(plan: CellPlan, why: str = "") -> None:
        running[executor.submit(_task(plan, data_dir))] = plan
        verb = "resuming" if plan.status == RESUME else "starting"
        logger.info(f"{verb} {plan.cell.label}" + (f" ({plan.run_dir})" if plan.run_dir else "")
                    + (f", again: {plan.redoes} does not count ({plan.redo_reason})" if plan.redoes else "")
                    + (f", to fill the time left ({why}): the deadline will stop it with a checkpoint"
                       if why else ""))

    def taken_elsewhere(plan: CellPlan) -> bool:
        """Whether another process finished or runs the cell since it was planned (then it is not
        started here: done, or skipped as running there)."""
        other = planner.started_elsewhere(plan)
        if other is None:
            return False
        if other.status == DONE:
            finished[plan.cell] = other.run_dir
            report.done.append(plan.cell)
            logger.info(f"not starting {plan.cell.label}: another process has finished it meanwhile ({other.run_dir})")
        else:
            report.skipped.append((plan.cell, f"running in another process ({other.run_dir})"))
            logger.warning(f"not starting {plan.cell.label}: another process has started it meanwhile "
                           f"({other.run_dir}); run this sweep again once it has finished")
        return True

    def collect(plan: CellPlan, outcome: Outcome) -> None:
        """Index a finished cell and make it a source for its dependents; report a failed one."""
        if outcome.status == "finished":
            root = Path(plan.config["run"]["output_dir"]).resolve()
            run_dir = _materialise(outcome, root)
            record_finished(RunDir(run_dir))
            finished[plan.cell] = run_dir
            report.done.append(plan.cell)
            report.ran.append(plan.cell)
            logger.info(f"finished {plan.cell.label} in {_hms(outcome.seconds)}: {run_dir}")
        else:
            log = Path(outcome.run_dir) / RunDir.LOG if outcome.run_dir else None
            report.failed.append((plan.cell, outcome.error or outcome.status))
            logger.error(f"{outcome.status} {plan.cell.label}: {(outcome.error or '').splitlines()[0]}"
                         + (f" (log: {log})" if log else ""))

    def stop_running(why: str) -> list[CellPlan]:
        """Stop the running cells (`_stop`), collect those that finished meanwhile, and return the
        others: stopped with a checkpoint, for the same command to resume."""
        ended = []
        for plan, outcome in _stop(executor, running, why):
            if outcome.status == "finished":           # it ended before the stop reached it
                collect(plan, outcome)
                ended.append(plan)
        return [plan for plan in running.values() if plan not in ended]

    def release_waiting() -> bool:
        """Queue (or count as done) each waiting cell whose source has finished, and skip those whose
        source failed or was skipped; True when a cell joined the queue or became done."""
        moved = False
        for plan in list(waiting):
            source = Cell(plan.row.init_from, plan.cell.dataset, plan.cell.seed)
            if source in finished:
                waiting.remove(plan)
                new = planner.plan(plan.cell, finished)
                if new.status == DONE:
                    finished[new.cell] = new.run_dir
                    report.done.append(new.cell)
                else:
                    queue.append(new)
                    queue.sort(key=in_order)
                moved = True
            elif any(source == c for c, _ in report.failed + report.skipped):
                why = next(reason for c, reason in report.failed + report.skipped if c == source)
                waiting.remove(plan)
                report.skipped.append((plan.cell, f"its init_from cell {source.label} did not finish here: {why}"))
                logger.error(f"skipped {plan.cell.label}: its init_from cell {source.label} did not finish "
                             f"here: {why}")
        return moved

    try:
        while queue or waiting or running or deferred:
            while queue and len(running) < executor.capacity:
                plan = queue.pop(0)
                if taken_elsewhere(plan):
                    continue
                if why := _refusal(needs.get(plan.cell), deadline):
                    if fill and time.time() < deadline.timestamp():
                        deferred.append((plan, why))
                        continue
                    report.skipped.append((plan.cell, f"not started: {why}"))
                    logger.warning(f"not starting {plan.cell.label}: {why}")
                    continue
                start(plan)
            while deferred and not queue and len(running) < executor.capacity:
                plan, why = deferred.pop(0)
                if taken_elsewhere(plan):
                    continue
                why = _refusal(needs.get(plan.cell), deadline) or why       # as of now, not when deferred
                if may_fill(time.time(), deadline.timestamp()):
                    start(plan, why)
                else:
                    report.skipped.append((plan.cell, f"not started: {why}; under {duration(FILL_MIN_S)} left "
                                                      "to fill"))
                    logger.warning(f"not starting {plan.cell.label}: {why}")
            if release_waiting():                # a source finished (here or elsewhere): its dependents may start
                continue
            if not running:                      # what still waits has a source that will not run here
                for plan in waiting:
                    source = Cell(plan.row.init_from, plan.cell.dataset, plan.cell.seed)
                    report.skipped.append((plan.cell, f"its init_from cell {source.label} did not finish here: not run"))
                waiting.clear()
                break
            if deadline is not None and time.time() >= deadline.timestamp():
                for plan in stop_running(f"the deadline ({deadline:%H:%M}) has come: stopping {len(running)} "
                                         "running cell(s) with a checkpoint; the same command resumes them"):
                    report.skipped.append((plan.cell, "stopped at the deadline with a checkpoint; the same "
                                                      "command resumes it"))
                for plan in queue + waiting + [p for p, _ in deferred]:
                    report.skipped.append((plan.cell, "not started: the deadline has come"))
                running.clear()
                queue.clear()
                waiting.clear()
                deferred.clear()
                break
            wait_s = REPORT_EVERY_S if deadline is None else max(1.0, min(REPORT_EVERY_S,
                                                                          deadline.timestamp() - time.time()))
            for future in executor.wait(list(running), timeout=wait_s):
                collect(running.pop(future), executor.result(future))
            if time.perf_counter() - last_report >= REPORT_EVERY_S:
                logger.info(summary())
                last_report = time.perf_counter()
    except KeyboardInterrupt:
        stop_running(f"sweep interrupted: stopping {len(running)} running cell(s); run the same command "
                     "again to resume them and skip the finished ones")
        raise
    finally:
        executor.close()
    report.seconds = time.perf_counter() - started
    logger.info(summary())
    return report


def sweep_tables(sweep: Sweep, data_dir: str | None = None, baseline: str | None = None,
                 resamples: int = RESAMPLES, test_seed: int = SEED,
                 same_build: bool = False) -> dict[str, "ComparisonTable"]:
    """`crsbench compare` of each dataset, restricted to the sweep's rows and seeds (and their data: a
    row's runs on other data settings, say the release's instance set, belong to other sweeps), with
    significance markers against `baseline` (MODEL[:TAG], one of the rows) when given; with
    `same_build`, only the runs made on this code's preprocessing build, as `sweep --same-build` counts."""
    from crsbench.datasets.loader import current_data_version
    from crsbench.results import row_tests
    from crsbench.results.compare import compare
    tables = {}
    root = Path(sweep.output_dir or "runs")
    planner = Planner(sweep, data_dir)
    datasets = list(dict.fromkeys(d for r in sweep.rows for d in r.datasets))
    for dataset in datasets:
        keep = set()
        for r in sweep.rows:
            if dataset in r.datasets:
                _, config = planner.resolve(r, Cell(r.name, dataset, r.seeds[0]), None)
                keep.add((r.model, r.tag, r.protocol or "crsbench", planner.fingerprint(dataset, config["data"])))
        seeds = {seed for r in sweep.rows if dataset in r.datasets for seed in r.seeds}
        table = compare(results_db(root), dataset, data_version=current_data_version(dataset, data_dir),
                        keep=keep.__contains__, seeds=seeds, builds=planner.builds if same_build else None)
        if baseline is not None:
            row_tests.add_significance(table, baseline, resamples, test_seed)
        tables[dataset] = table
    return tables


def sweep_table(sweep: Sweep, data_dir: str | None = None, baseline: str | None = None,
                same_build: bool = False) -> str:
    """The Markdown of `sweep_tables`, a section per dataset."""
    return "\n\n".join(f"### {dataset}\n\n{table.to_markdown()}" for dataset, table
                        in sweep_tables(sweep, data_dir, baseline, same_build=same_build).items())
