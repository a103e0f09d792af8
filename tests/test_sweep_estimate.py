"""`crsbench sweep --dry-run`'s time estimate: a cell still to run costs the median of its row's
finished seeds; a cell to resume, that less the epochs its run already trained; a row with no
finished seed is unknown."""
import json

import pytest

from crsbench.run_dir import RunDir
from crsbench.sweep.driver import describe_plan
from crsbench.sweep.estimate import duration, estimate, finished_seconds
from crsbench.sweep.plan import DONE, RESUME, RUNNING, TODO, CellPlan
from crsbench.sweep.spec import Cell


def _finished(tmp_path, name, stage_seconds, data_s=10.0, eval_s=20.0):
    run = RunDir(tmp_path / name)
    run.path.mkdir(parents=True)
    run.metrics_file.write_text(json.dumps({
        "training": {"stages": [{"stage": f"s{i}", "seconds": s} for i, s in enumerate(stage_seconds)]},
        "timings": {"data_s": data_s, "eval_s": eval_s, "train_s": 1.0, "total_s": 2.0}}))
    return run.path


def test_estimate_from_the_rows_finished_seeds(tmp_path):
    # a resumed run's train_s/total_s cover its last process only: the stages' seconds are what count
    assert finished_seconds(_finished(tmp_path, "a", [600.0, 1170.0])) == pytest.approx(1800.0)
    b, c = _finished(tmp_path, "b", [1170.0]), _finished(tmp_path, "c", [3570.0])
    interrupted = RunDir(tmp_path / "i")
    interrupted.path.mkdir()
    interrupted.history.write_text("".join(json.dumps({"stage": "rec", "epoch": e, "seconds": 400.0}) + "\n"
                                           for e in (1, 2)))
    plans = [CellPlan(Cell("kgsf", "redial", 1), None, DONE, tmp_path / "a"),
             CellPlan(Cell("kgsf", "redial", 2), None, DONE, b),
             CellPlan(Cell("kgsf", "redial", 3), None, DONE, c),
             CellPlan(Cell("kgsf", "redial", 4), None, TODO),
             CellPlan(Cell("kgsf", "redial", 5), None, RESUME, interrupted.path),
             CellPlan(Cell("kgsf", "opendialkg", 1), None, TODO),       # another dataset: no finished seed
             CellPlan(Cell("kbrd", "redial", 1), None, TODO),
             CellPlan(Cell("kbrd", "redial", 2), None, RUNNING, tmp_path / "elsewhere")]   # not this sweep's
    guess = estimate(plans)
    assert guess.seconds == {3: pytest.approx(1800.0), 4: pytest.approx(1000.0)}   # median 1800; 1800 - 800
    assert guess.unknown == [5, 6] and guess.total == pytest.approx(2800.0)
    listing = describe_plan(plans, workers=2)
    assert "kgsf / redial / seed 4      to do     ~30m" in listing
    assert "kgsf / redial / seed 5      resume    ~17m" in listing
    # two workers: the 30-min and the 17-min cell side by side take 30 min, not half their 47
    assert listing.splitlines()[-1] == ("estimated compute still to spend: ~47m for 2 cell(s) (about 30m with 2 "
                                        "workers); 2 cell(s) unknown (no finished seed of their row or kind yet); from the "
                                        "finished cells' recorded times, on the machine that ran them")
    assert duration(3 * 3600 + 5 * 60 + 20) == "3h05m"


def test_a_row_without_finished_seeds_borrows_from_rows_of_its_kind(tmp_path):
    """An ablation of KGSF's conversation stage costs about what KGSF's conversation stage does; a
    row of other tasks or other epochs does not lend its times."""
    from crsbench.sweep.spec import Row
    conv = Row("kgsf-conv", "kgsf", overrides=["run.tasks=[conv]"])
    copy = Row("kgsf-copy", "kgsf", tag="-copy", overrides=["run.tasks=[conv]", "model.copy=false"])
    long = Row("kgsf-20ep", "kgsf", overrides=["run.tasks=[conv]", "stages.conv.epochs=20"])
    rec = Row("kgsf", "kgsf", overrides=["run.tasks=[rec]"])
    quarter = Row("kgsf-f25", "kgsf", overrides=["run.tasks=[conv]", "data.train_fraction=0.25"])
    plans = [CellPlan(Cell("kgsf-conv", "redial", 1), conv, DONE, _finished(tmp_path, "a", [3000.0])),
             CellPlan(Cell("kgsf-conv", "redial", 2), conv, DONE, _finished(tmp_path, "b", [3600.0])),
             CellPlan(Cell("kgsf-copy", "redial", 1), copy, TODO),
             CellPlan(Cell("kgsf-20ep", "redial", 1), long, TODO),
             CellPlan(Cell("kgsf", "redial", 1), rec, TODO),
             CellPlan(Cell("kgsf-copy", "opendialkg", 1), copy, TODO),
             CellPlan(Cell("kgsf-f25", "redial", 1), quarter, TODO)]
    guess = estimate(plans)
    assert guess.seconds == {2: pytest.approx(3330.0)} and guess.borrowed == {2}   # median 3300 + 30 s
    assert guess.unknown == [3, 4, 5, 6]
    listing = describe_plan(plans)
    assert "kgsf-copy / redial / seed 1      to do     ≈56m" in listing
    assert "1 of them (≈) from other rows of the same model, tasks, data fraction and epochs" in listing.splitlines()[-1]


def test_a_cell_that_redoes_another_builds_run_costs_what_that_run_cost(tmp_path):
    old = _finished(tmp_path, "old", [900.0])                # 900 + 10 + 20 s
    other = _finished(tmp_path, "other", [3000.0])
    plans = [CellPlan(Cell("kgsf", "redial", 1), None, TODO, redoes=old, redo_reason="another preprocessing build"),
             CellPlan(Cell("kgsf", "redial", 2), None, DONE, other)]
    assert estimate(plans).seconds == {0: pytest.approx(930.0)}     # its own run, not the row's median
    assert "re-does " + str(old) + " (another preprocessing build)" in describe_plan(plans)


def test_only_runs_on_the_same_kind_of_device_lend_their_times(tmp_path):
    """A sweep on this CPU learns nothing from a row's GPU runs (a GPU's 4 minutes say nothing of the
    CPU's hours), nor a GPU sweep from CPU runs; a run with no recorded device still counts."""
    cpu, gpu, unknown = (_finished(tmp_path, n, [s]) for n, s in (("cpu", 3570.0), ("gpu", 210.0), ("old", 570.0)))
    for run, device in ((cpu, "cpu"), (gpu, "cuda:0")):
        RunDir(run).write_meta({"model": "kgsf", "dataset": "redial", "environment": {"device": device}})
    plans = [CellPlan(Cell("kgsf", "redial", 1), None, DONE, cpu), CellPlan(Cell("kgsf", "redial", 2), None, DONE, gpu),
             CellPlan(Cell("kgsf", "redial", 3), None, TODO)]
    assert estimate(plans, device="cpu").seconds == {2: pytest.approx(3600.0)}
    assert estimate(plans, device="cuda").seconds == {2: pytest.approx(240.0)}
    assert estimate(plans).seconds == {2: pytest.approx(1920.0)}                     # the median of both
    plans.append(CellPlan(Cell("kgsf", "redial", 4), None, DONE, unknown))
    assert estimate(plans, device="cuda").seconds == {2: pytest.approx(420.0)}       # median of 240 and 600
    assert describe_plan(plans, device="cpu").endswith("from the finished cells' recorded times on cpu, on the "
                                                       "machine that ran them")
