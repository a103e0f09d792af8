"""Sweeps on the shared ReDial data: a tiny grid under the local executor and a real local Ray
instance, a failing cell that does not stop the others, an interrupted sweep that resumes, and the
sweep files' errors. Every shipped table's sweep file must plan (--dry-run)."""
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crsbench.errors import ConfigError
from crsbench.sweep.driver import run_order
from crsbench.sweep.plan import DONE, RESUME, TODO, WAIT, CellPlan
from crsbench.sweep.spec import cells, load_sweep, narrow

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRAINED = {"data.train_fraction": 0.05, "train.epochs": 1, "eval.max_samples": 300}


def _write(tmp_path, data, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _grid(out, trained=TRAINED, broken=True):
    rows = [{"model": "popularity"}, {"model": "context_repeat"},
            {"model": "textcnn", "seeds": [1], "set": dict(trained)}]
    if broken:
        rows.append({"model": "textcnn", "tag": "-broken", "seeds": [1], "set": {"model.channels": -1}})
    return {"name": "tiny", "datasets": ["redial"], "seeds": [1, 2], "output_dir": str(out), "rows": rows}


def crsbench(*args, env, timeout=900):
    return subprocess.run([sys.executable, "-m", "crsbench", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def env(real_data_dir, real_cache_dir, redial):      # `redial` builds the shared cache first
    return {**os.environ, "CRSBENCH_DATA": str(real_data_dir), "CRSBENCH_CACHE": str(real_cache_dir)}


def test_sweep_files_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'sedes'") as err:
        load_sweep(_write(tmp_path, {"sedes": [1], "rows": [{"model": "kgsf"}]}))
    assert "did you mean 'seeds'" in err.value.hint
    with pytest.raises(ConfigError, match="unknown key 'init'"):
        load_sweep(_write(tmp_path, {"rows": [{"model": "kgsf", "init": "x"}]}))
    with pytest.raises(ConfigError, match="init_from 'kgsf-rec' names no row"):
        load_sweep(_write(tmp_path, {"rows": [{"model": "kgsf"}, {"model": "kgsf", "tag": "c", "init_from": "kgsf-rec"}]}))
    with pytest.raises(ConfigError, match="comes after it"):
        load_sweep(_write(tmp_path, {"rows": [{"model": "kgsf", "init_from": "b"}, {"model": "kgsf", "name": "b"}]}))
    with pytest.raises(ConfigError, match="second row named 'kgsf'"):
        load_sweep(_write(tmp_path, {"rows": [{"model": "kgsf"}, {"model": "kgsf"}]}))
    sweep = load_sweep(_write(tmp_path, {"seeds": [1, 2], "rows": [{"model": "kgsf", "set": {"run.tasks": ["rec"]}},
                                                                   {"model": "kgsf", "name": "c", "init_from": "kgsf"}]}))
    assert [c.label for c in cells(sweep)] == ["kgsf / redial / seed 1", "c / redial / seed 1",     # seed by seed
                                               "kgsf / redial / seed 2", "c / redial / seed 2"]
    assert sweep.rows[0].overrides == ["run.tasks=[rec]"]


def test_a_sweep_narrows_to_rows_and_seeds_keeping_the_rows_they_start_from(tmp_path):
    sweep = load_sweep(_write(tmp_path, {"seeds": [1, 2, 3], "rows": [
        {"model": "popularity"}, {"model": "kgsf"}, {"model": "kgsf", "name": "c", "init_from": "kgsf"},
        {"model": "kbrd", "seeds": [2, 3]}]}))
    first = narrow(sweep, seeds=[1])
    assert [c.label for c in cells(first)] == ["popularity / redial / seed 1", "kgsf / redial / seed 1",
                                               "c / redial / seed 1"]           # kbrd has no seed 1: dropped
    # --seeds 3 1: seed 3 of every row first, then seed 1 (a source still before its dependent)
    assert [c.label for c in cells(narrow(sweep, seeds=[3, 1]))] == [
        "popularity / redial / seed 3", "kgsf / redial / seed 3", "c / redial / seed 3", "kbrd / redial / seed 3",
        "popularity / redial / seed 1", "kgsf / redial / seed 1", "c / redial / seed 1"]
    conv = narrow(sweep, rows=["c"], seeds=[2, 3])
    assert [r.name for r in conv.rows] == ["kgsf", "c"] and conv.rows[1].seeds == [2, 3]
    assert {c.label for c in cells(conv)} <= {c.label for c in cells(sweep)}   # same cells as the full sweep
    with pytest.raises(ConfigError, match="no row 'kbdr'") as err:
        narrow(sweep, rows=["kbdr"])
    assert "did you mean 'kbrd'" in err.value.hint
    with pytest.raises(ConfigError, match="no seed 4"):
        narrow(sweep, seeds=[4])


def test_interrupted_cells_run_before_new_ones_then_seed_by_seed(tmp_path):
    sweep = load_sweep(_write(tmp_path, {"seeds": [1, 2], "rows": [
        {"model": "popularity"}, {"model": "kgsf"}, {"model": "kgsf", "name": "c", "init_from": "kgsf"}]}))
    status = {"popularity / redial / seed 1": DONE, "kgsf / redial / seed 2": RESUME,
              "c / redial / seed 1": WAIT, "c / redial / seed 2": WAIT}
    row = {r.name: r for r in sweep.rows}
    plans = [CellPlan(c, row[c.row], status.get(c.label, TODO)) for c in cells(sweep)]
    assert [p.cell.label for p in run_order(plans)] == [
        "kgsf / redial / seed 2", "kgsf / redial / seed 1", "popularity / redial / seed 2"]


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_plans(env, path, monkeypatch, capsys):
    """In process (the CLI's own `main`): eleven interpreters starting torch cost a minute of CI."""
    from crsbench.cli import main
    for key in ("CRSBENCH_DATA", "CRSBENCH_CACHE"):
        monkeypatch.setenv(key, env[key])
    code = main(["sweep", str(path), "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert any(" cells: " in line for line in out.splitlines()[-2:]), out


def _interrupt_in_training(proc, out):
    """SIGINT to the sweep's driver once the trained cell has a checkpoint inside an epoch."""
    deadline, run = time.time() + 600, None
    while time.time() < deadline and proc.poll() is None and run is None:
        for meta in out.glob("redial/textcnn/*/run.json"):
            progress = json.loads(meta.read_text()).get("progress") or {}
            if progress.get("batch") and progress.get("epoch", 0) >= 1:
                run = meta.parent
        time.sleep(0.05)
    assert run is not None, "the trained cell finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    return run


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_sweep_runs_skips_finished_cells_and_resumes_an_interrupted_one(env, tmp_path, executor):
    """The tiny grid under each executor: interrupted while the trained cell is inside an epoch (every
    running cell checkpoints and is marked interrupted), then run again: the interrupted cell resumes
    in its own run dir, finished cells are skipped, the broken cell fails without stopping the others."""
    if executor == "ray":
        import ray  # noqa: F401  (a test dependency: its absence must fail, not skip)
    out = tmp_path / "runs"
    grid = _grid(out)
    grid["rows"][2]["set"] = {**TRAINED, "train.epochs": 4, "train.checkpoint_minutes": 0.002}
    path = _write(tmp_path, grid)
    args = ["sweep", str(path), "--workers", "2", "--executor", executor, "--threads", "1"]
    # started as a script's background job is (`crsbench sweep ... &`: SIGINT ignored); the driver
    # must still stop on SIGINT
    proc = subprocess.Popen([sys.executable, "-m", "crsbench", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    run = _interrupt_in_training(proc, out)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, log
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted", log
    assert json.loads((run / "run.json").read_text())["environment"]["threads"] == 1      # --threads
    listing = crsbench("sweep", str(path), "--dry-run", env=env).stdout
    assert re.search(rf"textcnn / redial / seed 1 +resume +\? +{re.escape(str(run))}", listing), listing
    # a run another live process holds is "running": listed so, and not started a second time
    interrupted = (run / "run.json").read_text()
    holder = subprocess.Popen(["sleep", "120"])
    try:
        (run / "run.json").write_text(json.dumps({**json.loads(interrupted), "status": "running",
                                                  "host": socket.gethostname(), "pid": holder.pid, "pid_start": None}))
        held = crsbench("sweep", str(path), "--dry-run", env=env).stdout
        assert re.search(rf"textcnn / redial / seed 1 +running +{re.escape(str(run))}", held), held
        assert "1 running in another process" in held
    finally:
        holder.kill()
        (run / "run.json").write_text(interrupted)
    again = crsbench(*args, env=env)
    assert again.returncode == 1, again.stderr[-3000:]          # the broken cell fails again
    assert f"resuming textcnn / redial / seed 1 ({run})" in again.stderr
    assert "failed textcnn-broken / redial / seed 1: RuntimeError" in again.stderr
    assert "not done: textcnn-broken" in again.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert "| popularity |" in again.stdout and "| textcnn |" in again.stdout
    final = crsbench("sweep", str(path), "--dry-run", env=env).stdout
    assert "6 cells: 5 done, 0 to resume, 1 to do" in final
    assert "1 cell(s) unknown (no finished seed of their row or kind yet)" in final   # the broken row:
    # textcnn, but not of the trained row's kind (other epochs), so it borrows no time
    # the index holds each finished cell once, written by the driver
    crsbench("compare", "--dataset", "redial", "--output-dir", str(out), "--csv", str(tmp_path / "t.csv"), env=env)
    seeds = {r["model"]: r["seeds"] for r in csv.DictReader((tmp_path / "t.csv").open())}
    assert seeds == {"context_repeat": "2", "popularity": "2", "textcnn": "1"}


def _a_fixed_defect_makes_a_finished_cell_to_do(path, env, exposed, sound):
    """A finished run that a fixed defect could have changed is no longer done: its cell is to do,
    naming the run and the fix; the other cell stays done (the planner, in process, with a defect
    made up for popularity runs whose code lacks its fix)."""
    from crsbench.results import fixed_defects
    from crsbench.sweep.plan import Planner
    fake = fixed_defects.FixedDefect("made-up", "f" * 40, "2026-12-01T00:00:00+00:00", "a made-up defect",
                                     lambda meta, config: meta["model"] == "popularity")
    from crsbench.run_dir import RUNNING as ALIVE, process_identity

    def plan() -> dict:
        old = dict(os.environ)
        os.environ.update(env)
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(fixed_defects, "FIXED_DEFECTS", (*fixed_defects.FIXED_DEFECTS, fake))
                return {p.cell.row: p for p in Planner(load_sweep(path)).plan_all()}
        finally:
            os.environ.clear()
            os.environ.update(old)

    plans = plan()
    assert plans["popularity"].status == TODO and plans["popularity"].redoes == exposed
    assert plans["popularity"].redo_reason == "made before the fix of made-up (fffffff)"
    assert plans["context_repeat"].status == DONE and plans["context_repeat"].run_dir == sound
    # the same run, still alive (this process stands in for it): named too, so its user can stop it
    meta_file = exposed / "run.json"
    saved = meta_file.read_text()
    meta_file.write_text(json.dumps({**json.loads(saved), "status": ALIVE, **process_identity()}))
    try:
        plans = plan()
    finally:
        meta_file.write_text(saved)
    assert plans["popularity"].status == TODO and plans["popularity"].redoes == exposed
    assert plans["popularity"].redo_reason == ("made before the fix of made-up (fffffff); "
                                               "still running, and it will not count")
    # a run that failed for a full disk resumes (its checkpoint is intact); any other failure starts over
    sound_file = sound / "run.json"
    kept = sound_file.read_text()
    try:
        for error, status in (("StorageError: last.pt: could not be written, the disk is full", RESUME),
                              ("RuntimeError: boom", TODO)):
            sound_file.write_text(json.dumps({**json.loads(kept), "status": "failed", "error": error}))
            plans = plan()
            assert plans["context_repeat"].status == status, error
            assert plans["context_repeat"].run_dir == (sound if status == RESUME else None)
    finally:
        sound_file.write_text(kept)


def test_same_build_reruns_the_cells_finished_on_another_preprocessing_build(env, tmp_path):
    """`--same-build`: a finished cell whose run started on another preprocessing build of the same
    data (here: one that predates the content record) is listed as re-done and runs again; a cell
    on this code's build stays done; without the flag both are done."""
    out = tmp_path / "runs"
    path = _write(tmp_path, {"name": "builds", "datasets": ["redial"], "seeds": [1], "output_dir": str(out),
                             "rows": [{"model": "popularity"}, {"model": "context_repeat"}]})
    assert crsbench("sweep", str(path), env=env).returncode == 0
    (old,) = out.glob("redial/popularity/*/run.json")
    (kept,) = out.glob("redial/context_repeat/*/run.json")
    meta = json.loads(old.read_text())
    build = json.loads(kept.read_text())["data"]["content"]
    assert meta["data"]["content"] == build and len(build) == 64
    del meta["data"]["content"]                               # as a run from before the digest was recorded
    old.write_text(json.dumps(meta))
    assert "2 cells: 2 done, 0 to resume, 0 to do" in crsbench("sweep", str(path), "--dry-run", env=env).stdout
    listing = crsbench("sweep", str(path), "--dry-run", "--same-build", env=env).stdout
    assert re.search(rf"popularity / redial / seed 1 +to do +~\d+m +re-does {re.escape(str(old.parent))} "
                     r"\(another preprocessing build\)", listing), listing
    assert re.search(rf"context_repeat / redial / seed 1 +done +{re.escape(str(kept.parent))}", listing), listing
    assert "2 cells: 1 done, 0 to resume, 1 to do (1 of them re-do a run that does not count)" in listing
    # the table of this build's runs only: the older build's popularity run is left out, and said to be
    only_build = crsbench("sweep", str(path), "--table", "--same-build", env=env).stdout
    assert "| context_repeat | 1 |" in only_build and "| popularity |" not in only_build, only_build
    assert "1 finished run(s) left out as not made on the preprocessing build" in only_build
    # a driver stopped between a cell's end and its record left the run out of the index: the next
    # sweep indexes it (the table below has its row)
    import sqlite3
    with sqlite3.connect(out / "results.sqlite") as db:
        db.execute("PRAGMA foreign_keys = ON")
        assert db.execute("DELETE FROM runs WHERE model = 'context_repeat'").rowcount == 1
    again = crsbench("sweep", str(path), "--same-build", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"again: {old.parent} does not count (another preprocessing build)" in again.stderr
    assert f"indexed context_repeat / redial / seed 1: its finished run was missing from {out / 'results.sqlite'}" \
        in again.stderr
    runs = sorted(out.glob("redial/popularity/*/run.json"))
    assert len(runs) == 2 and len(list(out.glob("redial/context_repeat/*/run.json"))) == 1
    assert json.loads(runs[-1].read_text())["data"]["content"] == build
    assert "0 to do" in crsbench("sweep", str(path), "--dry-run", "--same-build", env=env).stdout
    _a_fixed_defect_makes_a_finished_cell_to_do(path, env, runs[-1].parent, kept.parent)
    # --table: the sweep's rows from the store, with markers, and nothing run
    table = crsbench("sweep", str(path), "--table", "--baseline", "popularity", "--resamples", "200",
                     "--csv", str(tmp_path / "t.csv"), env=env)
    assert table.returncode == 0, table.stderr[-3000:]
    assert "| context_repeat | 1 | " in table.stdout and "*: differs from popularity" in table.stdout
    assert {r["model"] for r in csv.DictReader((tmp_path / "t.csv").open())} == {"popularity", "context_repeat"}
    assert len(list(out.glob("redial/*/*/run.json"))) == 3
