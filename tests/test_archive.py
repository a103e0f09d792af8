"""`crsbench runs --archive/--unarchive`: a runs tree's records survive a move to a new machine, and
nothing but record files comes out of an archive."""
import io
import os
import subprocess
import sys
import tarfile
from datetime import datetime, timezone

import pytest

from crsbench.errors import DataError
from crsbench.results.archive import archive_runs, unarchive_runs
from crsbench.results.compare import compare
from crsbench.results.row_tests import add_significance
from crsbench.results.store import results_db
from crsbench.run_dir import RunDir, find_runs
from conftest import small_redial


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "crsbench", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def trained(real_data_dir, tmp_path_factory):
    """Two models, two seeds each, on a small slice of the real ReDial data."""
    tmp = tmp_path_factory.mktemp("archive")
    data = small_redial(real_data_dir, tmp)
    env = {**os.environ, "CRSBENCH_CACHE": str(tmp / "cache"), "CRSBENCH_DATA": str(data)}
    for model in ("popularity", "context_repeat"):
        for seed in (1, 2):
            proc = cli("run", "--model", model, "--dataset", "redial", "--seed", str(seed),
                       "--set", f"run.output_dir={tmp / 'runs'}", env=env)
            assert proc.returncode == 0, proc.stderr
    return tmp, env


def _table(root):
    table = compare(results_db(root), "redial")
    add_significance(table, "popularity", resamples=500)
    return table.to_markdown()


@pytest.mark.slow
def test_records_move_to_a_new_runs_tree_and_give_the_same_table(trained, tmp_path):
    tmp, env = trained
    for run in find_runs(tmp / "runs"):                      # what an archive must leave out
        (run.path / RunDir.WEIGHTS).write_bytes(b"weights")
        (run.checkpoints).mkdir(exist_ok=True)
        (run.last_checkpoint).write_bytes(b"checkpoint")
    out = tmp_path / "records.tar.gz"
    proc = cli("runs", "--output-dir", str(tmp / "runs"), "--archive", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "4 finished run(s)" in proc.stdout
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert {n.split("/")[-1] for n in names} >= {"run.json", "config.yaml", "metrics.json", "outcomes_test.npz"}
    assert not any(n.endswith((".pt", "log.txt")) for n in names)

    fresh = tmp_path / "new_machine"
    proc = cli("runs", "--output-dir", str(fresh), "--unarchive", str(out), str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()                 # several archives in one call, each whole
    assert f"{out}: added 4 run(s)" in first and "indexes 4" in first
    assert "added 0 run(s)" in second and "(4 already there, kept)" in second
    assert _table(fresh) == _table(tmp / "runs")             # means, stds and paired markers alike
    assert "*" in _table(fresh)                              # context_repeat differs from popularity

    run = find_runs(fresh)[0]
    run.update_meta(note="edited here")                      # a run already there is kept as it is
    before = {p: p.read_bytes() for r in find_runs(fresh) for p in r.record_files()}
    again = unarchive_runs(out, fresh)
    assert again == {"added": 0, "kept": 4, "indexed": 4}
    assert before == {p: p.read_bytes() for r in find_runs(fresh) for p in r.record_files()}
    assert run.read_meta()["note"] == "edited here"


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["../redial/x/r/run.json", "/abs/redial/x/run.json", "redial/x/r/model.pt",
                                  "redial/x/run.json", "redial/x/r/sub/run.json"])
def test_an_archive_member_that_is_not_a_record_file_writes_nothing(tmp_path, name):
    bad = _tar(tmp_path / "bad.tar.gz", [("redial/kgsf/r-seed1/config.yaml", b"run: {}\n"), (name, b"{}")])
    with pytest.raises(DataError, match="is not a run record file") as err:
        unarchive_runs(bad, tmp_path / "runs")
    assert name in err.value.message and "crsbench runs --archive" in err.value.hint
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.yaml"))


def test_a_link_or_a_broken_file_is_refused(tmp_path):
    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as tar:
        info = tarfile.TarInfo("redial/kgsf/r-seed1/run.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="not a run record file"):
        unarchive_runs(link, tmp_path / "runs")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable .tar.gz"):
        unarchive_runs(tmp_path / "junk.tar.gz", tmp_path / "runs")
    with pytest.raises(DataError, match="has no run.json"):
        unarchive_runs(_tar(tmp_path / "nometa.tar.gz", [("redial/kgsf/r-seed1/config.yaml", b"x")]), tmp_path / "runs")


def test_nothing_finished_is_an_error(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(DataError, match="no finished runs"):
        archive_runs(tmp_path / "runs", tmp_path / "x.tar.gz")


def test_a_ray_task_ships_the_same_record_and_its_log(tmp_path):
    from crsbench.sweep.executors import _ship
    run = RunDir(tmp_path / "redial" / "kgsf" / "r-seed1")
    run.path.mkdir(parents=True)
    for name in ("run.json", "config.yaml", "metrics.json", "history.jsonl", "outcomes_test.npz", "log.txt",
                 "model.pt", "output.txt", "predictions_test.jsonl"):
        (run.path / name).write_bytes(name.encode())
    assert sorted(_ship(run.path)) == sorted(["run.json", "config.yaml", "metrics.json", "history.jsonl",
                                              "outcomes_test.npz", "log.txt"])
    assert _ship(run.path)["history.jsonl"] == b"history.jsonl"


def test_since_keeps_the_runs_finished_from_then_on(tmp_path):
    """`runs --archive --since`: one session's runs, so that each archive stays small."""
    for name, finished in (("old", "2026-12-01T09:26:46+00:00"), ("new", "2026-12-01T14:03:42+00:00")):
        run = RunDir(tmp_path / "runs" / "redial" / "kgsf" / f"{name}-seed1")
        run.path.mkdir(parents=True)
        run.write_meta({"run_id": name, "model": "kgsf", "dataset": "redial", "seed": 1, "status": "finished",
                        "finished": finished})
    out = tmp_path / "x.tar.gz"
    assert archive_runs(tmp_path / "runs", out, since=datetime(2026, 12, 1, 11, 52))["runs"] == 1   # naive = UTC
    with tarfile.open(out) as tar:
        assert {m.name.split("/")[2] for m in tar.getmembers()} == {"new-seed1"}
    assert archive_runs(tmp_path / "runs", out)["runs"] == 2
    with pytest.raises(DataError, match="no finished runs since 2026-12-01T15:00:00"):
        archive_runs(tmp_path / "runs", out, since=datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc))
    # --until (exclusive): the part before it; with --since, a window
    assert archive_runs(tmp_path / "runs", out, until=datetime(2026, 12, 1, 11, 52))["runs"] == 1
    with tarfile.open(out) as tar:
        assert {m.name.split("/")[2] for m in tar.getmembers()} == {"old-seed1"}
    with pytest.raises(DataError, match="since 2026-12-01T09:00:00.* before 2026-12-01T09:26:46"):
        archive_runs(tmp_path / "runs", out, since=datetime(2026, 12, 1, 9, 0),
                     until=datetime(2026, 12, 1, 9, 26, 46, tzinfo=timezone.utc))
