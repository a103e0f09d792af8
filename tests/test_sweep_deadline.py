"""`crsbench sweep --deadline`: a cell starts only if its estimate fits before the deadline (a shorter
one after it still may), its dependents are reported with the reason, and at the deadline the running
cells are stopped with a checkpoint (the executor's stop) and reported as resumable. The driver runs on
a fake executor and a made-up plan, so nothing trains."""
import json
import time
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from crsbench.errors import ConfigError
from crsbench.run_dir import RunDir
from crsbench.sweep import driver
from crsbench.sweep.deadline import parse_deadline
from crsbench.sweep.executors import Outcome
from crsbench.sweep.plan import DONE, RUNNING, TODO, WAIT, CellPlan
from crsbench.sweep.spec import Cell, Row

NOW = datetime(2026, 12, 2, 6, 30)
SWEEP = SimpleNamespace(name="fake")


def test_deadline_forms():
    assert parse_deadline("+2h30m", NOW) == NOW + timedelta(hours=2, minutes=30)
    assert parse_deadline("+90m", NOW) == NOW + timedelta(minutes=90)
    assert parse_deadline("+45s", NOW) == NOW + timedelta(seconds=45)
    assert parse_deadline("08:30", NOW) == datetime(2026, 12, 2, 8, 30)
    assert parse_deadline("00:15", NOW) == datetime(2026, 12, 3, 0, 15)        # passed long ago: tomorrow
    assert parse_deadline("2026-12-02T09:15", NOW) == datetime(2026, 12, 2, 9, 15)
    for bad, message in (("+", "not a duration"), ("soon", "not a duration"), ("25:00", "not a time of day"),
                         ("2026-12-01T09:00", "that time has passed"),
                         ("06:00", "06:00 passed 0h30m ago"), ("00:31", "passed 5h59m ago")):
        with pytest.raises(ConfigError, match=message) as err:
            parse_deadline(bad, NOW)
        assert "+2h30m" in err.value.hint


def test_a_stale_time_of_day_names_tomorrows_date_in_its_hint():
    """A chain's `--deadline 14:30` reached after 14:30 must not become tomorrow's 14:30 silently."""
    with pytest.raises(ConfigError, match="chained sweep") as err:
        parse_deadline("06:00", NOW)
    assert "--deadline 2026-12-03T06:00" in err.value.hint


class FakeExecutor:
    """Each task 'runs' for the seconds its label names, then finishes; `stop` interrupts."""
    name, capacity = "fake", 1

    def __init__(self, lasts: dict[str, float]):
        self.lasts, self.started, self.stopped = lasts, [], []

    def submit(self, task):
        self.started.append(task.label)
        return (task.label, time.time() + self.lasts[task.label])

    def wait(self, futures, timeout):
        end = time.time() + timeout
        while time.time() < end:
            done = [f for f in futures if time.time() >= f[1]]
            if done:
                return done
            time.sleep(0.01)
        return []

    def result(self, future):
        return Outcome(future[0], "finished", run_dir=f"/nowhere/{future[0]}")

    def stop(self, futures):
        self.stopped += [f[0] for f in futures]
        return [Outcome(f[0], "interrupted", run_dir=f"/nowhere/{f[0]}") for f in futures]

    def close(self):
        pass


def _plans(tmp_path) -> list[CellPlan]:
    """A finished 'long' cell (its recorded 3,600 s is the estimate of its second seed), then a short
    one, a long seed to do, and a cell that starts from the long row's seed 2."""
    done = RunDir(tmp_path / "long1")
    done.path.mkdir()
    done.metrics_file.write_text(json.dumps({"timings": {"total_s": 3600.0}}))
    short = RunDir(tmp_path / "short1")
    short.path.mkdir()
    short.metrics_file.write_text(json.dumps({"timings": {"total_s": 1.0}}))
    long_row, short_row = Row("long", "kgsf"), Row("short", "popularity")
    after = Row("after", "kgsf", init_from="long")
    config = {"run": {"output_dir": str(tmp_path)}}
    return [CellPlan(Cell("long", "redial", 1), long_row, DONE, done.path),
            CellPlan(Cell("short", "redial", 1), short_row, DONE, short.path),
            CellPlan(Cell("long", "redial", 2), long_row, TODO, overrides=[], config=config),
            CellPlan(Cell("short", "redial", 2), short_row, TODO, overrides=[], config=config),
            CellPlan(Cell("after", "redial", 2), after, WAIT)]


class _Plans(list):
    elsewhere: dict
    recorded: list                                   # the run dirs the driver indexed, by name


@pytest.fixture
def planned(tmp_path, monkeypatch):
    plans = _Plans(_plans(tmp_path))

    class FakePlanner:
        def __init__(self, *args):
            pass

        def plan_all(self):
            return list(plans)

        def plan(self, cell, done):                  # the waiting cell, once its source has finished
            row = next(p.row for p in plans if p.cell == cell)
            return CellPlan(cell, row, TODO, overrides=[], config=plans[2].config)

        def started_elsewhere(self, plan):           # what another process did meanwhile (set by a test)
            return elsewhere.get(plan.cell.label)
    elsewhere: dict[str, CellPlan] = {}
    plans.elsewhere = elsewhere
    monkeypatch.setattr(driver, "Planner", FakePlanner)
    plans.recorded = []
    monkeypatch.setattr(driver, "record_finished", lambda run: plans.recorded.append(run.path.name))
    monkeypatch.setattr(driver, "_materialise", lambda outcome, root: root / outcome.label.split(" ")[0])
    monkeypatch.setattr(driver, "_index_unrecorded", lambda plans: None)    # the made-up done runs have no files
    return plans


def test_a_cell_that_does_not_fit_is_not_started_and_a_shorter_one_is(planned):
    fake = FakeExecutor({"short / redial / seed 2": 0.2})
    report = driver.run_sweep(SWEEP, fake, deadline=datetime.now() + timedelta(minutes=30))
    assert fake.started == ["short / redial / seed 2"]
    reasons = dict((c.label, why) for c, why in report.skipped)
    assert reasons["long / redial / seed 2"].startswith("not started: needs ~1h00m, 30m left before the deadline")
    assert reasons["after / redial / seed 2"] == ("its init_from cell long / redial / seed 2 did not finish here: "
                                                  + reasons["long / redial / seed 2"])
    assert [c.label for c in report.ran] == ["short / redial / seed 2"]


def test_the_deadline_stops_the_running_cells(planned):
    fake = FakeExecutor({"short / redial / seed 2": 600.0})      # estimated 1 s, but it takes 10 min
    started = time.perf_counter()
    report = driver.run_sweep(SWEEP, fake, deadline=datetime.now() + timedelta(seconds=3))
    assert time.perf_counter() - started < 30                   # it did not wait for the cell's 600 s
    assert fake.started == ["short / redial / seed 2"] and fake.stopped == ["short / redial / seed 2"]
    reasons = dict((c.label, why) for c, why in report.skipped)
    assert reasons["short / redial / seed 2"] == "stopped at the deadline with a checkpoint; the same command resumes it"
    assert reasons["long / redial / seed 2"].startswith("not started: needs ~1h00m, 0m left")
    assert reasons["after / redial / seed 2"].startswith("its init_from cell long / redial / seed 2 did not finish")
    assert not report.ran


def test_without_a_deadline_everything_starts(planned):
    fake = FakeExecutor({"long / redial / seed 2": 0.1, "short / redial / seed 2": 0.1,
                         "after / redial / seed 2": 0.1})
    report = driver.run_sweep(SWEEP, fake)
    assert not report.skipped and [c.label for c in report.ran] == [
        "long / redial / seed 2", "short / redial / seed 2", "after / redial / seed 2"]


def test_a_dependent_cell_starts_in_its_place_not_after_every_later_cell(planned):
    """`after` seed 2 waits for `long` seed 2; once that finishes it starts before short seed 3, a
    later cell of the sweep (seed by seed), not after everything queued since the sweep began."""
    planned.append(CellPlan(Cell("short", "redial", 3), planned[1].row, TODO, overrides=[], config=planned[2].config))
    fake = FakeExecutor({"long / redial / seed 2": 0.1, "short / redial / seed 2": 0.1,
                         "after / redial / seed 2": 0.1, "short / redial / seed 3": 0.1})
    report = driver.run_sweep(SWEEP, fake)
    assert not report.skipped and fake.started == [
        "long / redial / seed 2", "short / redial / seed 2", "after / redial / seed 2", "short / redial / seed 3"]


def test_a_cell_another_process_finished_meanwhile_is_not_trained_again(planned, tmp_path):
    """Two sweeps of one file (two chains, a SLURM array): the long cell's seed 2 was finished by the
    other after this sweep planned it, so it is not started here; its dependent starts from it."""
    other = CellPlan(Cell("long", "redial", 2), planned[2].row, DONE, tmp_path / "other-long2")
    planned.elsewhere["long / redial / seed 2"] = other
    fake = FakeExecutor({"short / redial / seed 2": 0.1, "after / redial / seed 2": 0.1})
    report = driver.run_sweep(SWEEP, fake)
    assert fake.started == ["short / redial / seed 2", "after / redial / seed 2"]
    assert not report.skipped and Cell("long", "redial", 2) in report.done
    assert [c.label for c in report.ran] == ["short / redial / seed 2", "after / redial / seed 2"]


def test_a_cell_another_process_started_meanwhile_is_skipped_with_its_dependents(planned, tmp_path):
    other = CellPlan(Cell("long", "redial", 2), planned[2].row, RUNNING, tmp_path / "other-long2")
    planned.elsewhere["long / redial / seed 2"] = other
    fake = FakeExecutor({"short / redial / seed 2": 0.1})
    report = driver.run_sweep(SWEEP, fake)
    assert fake.started == ["short / redial / seed 2"]
    reasons = dict((c.label, why) for c, why in report.skipped)
    assert reasons["long / redial / seed 2"] == f"running in another process ({tmp_path / 'other-long2'})"
    assert reasons["after / redial / seed 2"].startswith("its init_from cell long / redial / seed 2 did not "
                                                         "finish here: running in another process")


def test_the_dry_run_schedule_follows_the_drivers_order():
    """Two workers, a 2-hour window, in the driver's order: each cell starts when a worker is free and
    only if its estimate fits; a waiting cell joins the queue when its source finishes, at its place in
    the sweep's order (before a later row); a cell without an estimate runs until the deadline stops
    it; what is left at the deadline does not start."""
    from crsbench.sweep.deadline import schedule
    long_row, short_row, after = Row("long", "kgsf"), Row("short", "popularity"), Row("after", "kgsf", init_from="long")
    cell = {f"{r}{s}": Cell(r, "redial", s) for r in ("long", "short", "after") for s in (2, 3)}
    plans = [CellPlan(cell["long2"], long_row, TODO), CellPlan(cell["short2"], short_row, TODO),
             CellPlan(cell["long3"], long_row, TODO), CellPlan(cell["after2"], after, WAIT),
             CellPlan(cell["after3"], after, WAIT), CellPlan(cell["short3"], short_row, TODO)]
    needs = {cell["long2"]: 3600.0, cell["short2"]: 600.0, cell["long3"]: 3600.0,
             cell["after2"]: 3000.0, cell["after3"]: 3000.0}          # short3: no estimate
    verdicts = schedule(plans, needs, workers=2, now=0.0, deadline=7200.0)
    assert verdicts == {
        cell["long2"]: ("finishes", 3600.0), cell["short2"]: ("finishes", 600.0),
        cell["long3"]: ("finishes", 4200.0),            # on the worker short2 freed at 600 s
        cell["after2"]: ("finishes", 6600.0),           # joins at 3600 s, before short3 (a later plan)
        cell["after3"]: ("finishes", 7200.0),           # joins at 4200 s, before short3: 3000 s fit exactly
        cell["short3"]: ("stopped", 7200.0)}            # at 6600 s
    # with one worker, long3 and so its dependent never fit, and say why; after2 is next in order
    one = schedule(plans, needs, workers=1, now=0.0, deadline=7200.0)
    assert one[cell["long2"]] == ("finishes", 3600.0) and one[cell["short2"]] == ("finishes", 4200.0)
    assert one[cell["long3"]] == ("not started", "does not fit")
    assert one[cell["after2"]] == ("finishes", 7200.0)
    assert one[cell["short3"]] == ("not started", "the deadline has come")
    assert one[cell["after3"]] == ("not started", "its init_from cell does not finish")


def test_fill_starts_a_cell_that_does_not_fit_on_an_idle_worker_and_the_deadline_stops_it(planned, monkeypatch):
    """--fill: the short cell fits and runs first; then the worker would stay idle, so the long cell
    (needs 1 h) starts and is stopped at the deadline with its checkpoint, resumable; its dependent
    does not start. Without --fill the long cell does not start at all (above). (The least time left
    worth filling, 5 min, is 1 s here.)"""
    monkeypatch.setattr("crsbench.sweep.deadline.FILL_MIN_S", 1.0)
    fake = FakeExecutor({"short / redial / seed 2": 0.2, "long / redial / seed 2": 600.0})
    started = time.perf_counter()
    report = driver.run_sweep(SWEEP, fake, deadline=datetime.now() + timedelta(seconds=3), fill=True)
    assert time.perf_counter() - started < 30
    assert fake.started == ["short / redial / seed 2", "long / redial / seed 2"]
    assert fake.stopped == ["long / redial / seed 2"]
    reasons = dict((c.label, why) for c, why in report.skipped)
    assert reasons["long / redial / seed 2"] == "stopped at the deadline with a checkpoint; the same command resumes it"
    assert reasons["after / redial / seed 2"] == "not started: the deadline has come"
    assert [c.label for c in report.ran] == ["short / redial / seed 2"]


def test_fill_leaves_too_short_a_time_alone(planned):
    fake = FakeExecutor({"short / redial / seed 2": 0.2})
    report = driver.run_sweep(SWEEP, fake, deadline=datetime.now() + timedelta(minutes=4), fill=True)
    assert fake.started == ["short / redial / seed 2"]
    reasons = dict((c.label, why) for c, why in report.skipped)
    assert reasons["long / redial / seed 2"].startswith("not started: needs ~1h00m, ")
    assert reasons["long / redial / seed 2"].endswith("under 5m left to fill")


def test_the_dry_run_schedule_fills_idle_workers():
    """With fill, a cell that does not fit starts on a worker that would stay idle, after the cells
    that fit; its dependents do not start; with under 5 minutes left nothing fills."""
    from crsbench.sweep.deadline import schedule
    long_row, short_row, after = Row("long", "kgsf"), Row("short", "popularity"), Row("after", "kgsf", init_from="long")
    long2, short2, after2 = Cell("long", "redial", 2), Cell("short", "redial", 2), Cell("after", "redial", 2)
    plans = [CellPlan(long2, long_row, TODO), CellPlan(short2, short_row, TODO), CellPlan(after2, after, WAIT)]
    needs = {long2: 3600.0, short2: 600.0, after2: 600.0}
    assert schedule(plans, needs, workers=1, now=0.0, deadline=1800.0, fill=True) == {
        short2: ("finishes", 600.0), long2: ("filled", 1800.0),
        after2: ("not started", "its init_from cell does not finish")}
    assert schedule(plans, needs, workers=1, now=0.0, deadline=1800.0)[long2] == ("not started", "does not fit")
    assert schedule(plans, needs, workers=1, now=0.0, deadline=800.0, fill=True)[long2] == (
        "not started", "does not fit")                          # 200 s left after the short cell


class EndsAsStopped(FakeExecutor):
    """The cell's process ends on its own just as the stop comes (Ctrl-C, or the deadline): its
    outcome at the stop is `finished`. `interrupt`: the first wait is cut by Ctrl-C."""

    def __init__(self, lasts, interrupt=False):
        super().__init__(lasts)
        self.interrupt = interrupt

    def wait(self, futures, timeout):
        if self.interrupt:
            raise KeyboardInterrupt
        return super().wait(futures, timeout)

    def stop(self, futures):
        self.stopped += [f[0] for f in futures]
        return [Outcome(f[0], "finished", run_dir=f"/nowhere/{f[0]}") for f in futures]


def test_a_cell_that_finishes_as_ctrl_c_comes_is_indexed(planned):
    """The driver indexes every finished cell: one whose process ended just as Ctrl-C stopped it too
    (else its run is done on disk but missing from results.sqlite, and `compare` lacks its seed)."""
    fake = EndsAsStopped({"long / redial / seed 2": 600.0}, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        driver.run_sweep(SWEEP, fake)
    assert fake.stopped == ["long / redial / seed 2"] and planned.recorded == ["long"]


def test_a_cell_that_finishes_as_the_deadline_comes_counts_as_done(planned):
    fake = EndsAsStopped({"short / redial / seed 2": 600.0})
    report = driver.run_sweep(SWEEP, fake, deadline=datetime.now() + timedelta(seconds=2))
    assert fake.stopped == ["short / redial / seed 2"] and planned.recorded == ["short"]
    assert [c.label for c in report.ran] == ["short / redial / seed 2"]
    assert "short / redial / seed 2" not in {c.label for c, _ in report.skipped}
