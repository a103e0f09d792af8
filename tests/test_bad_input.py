"""Hostile input: every case ends in one clear message naming the file (and line or key), a non-zero
exit, no traceback, and nothing lost. Real data: a small ReDial directory built from the shared one."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest

from conftest import small_redial
from crsbench.datasets.jsonl import read_jsonl
from crsbench.datasets.redial import read_release_pickles
from crsbench.errors import DataError

pytestmark = pytest.mark.slow


def cli(*args, env, stdin=None):
    return subprocess.run([sys.executable, "-m", "crsbench", *args], capture_output=True, text=True, env=env,
                          timeout=600, input=stdin)


def clean_error(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


@pytest.fixture(scope="module")
def small(real_data_dir, tmp_path_factory):
    """A small data dir, its cache, and one finished popularity run to damage copies of."""
    tmp = tmp_path_factory.mktemp("bad")
    data = small_redial(real_data_dir, tmp)
    env = {**os.environ, "CRSBENCH_CACHE": str(tmp / "cache"), "CRSBENCH_DATA": str(data)}
    proc = cli("run", "--model", "popularity", "--dataset", "redial", "--set", f"run.output_dir={tmp / 'runs'}",
               env=env)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp / "runs" / "redial" / "popularity").iterdir()
    return tmp, data, env, run


def _copy_data(data, tmp_path):
    """A writable copy of the small data dir (the shared files stay symlinked)."""
    target = tmp_path / "data"
    shutil.copytree(data, target, symlinks=True)
    return target


def test_invalid_utf8_names_file_and_line(small, tmp_path):
    _, data, env, _ = small
    copy = _copy_data(data, tmp_path)
    train = copy / "redial" / "train_data.jsonl"
    lines = train.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"a", b"\xff", 1)
    train.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match="train_data.jsonl:3: not valid UTF-8"):
        list(read_jsonl(train))
    proc = cli("run", "--model", "popularity", "--dataset", "redial", "--data-dir", str(copy),
               "--set", f"run.output_dir={tmp_path / 'runs'}", env=env)
    clean_error(proc, "train_data.jsonl:3: not valid UTF-8")


@pytest.mark.parametrize("split", ["valid", "test"])
def test_an_empty_split_is_an_error_not_zeros(small, tmp_path, split):
    from crsbench.config.loader import DEFAULTS_FILE, read_yaml
    from crsbench.datasets.loader import load_dataset
    _, data, _, _ = small
    copy = _copy_data(data, tmp_path)
    (copy / "redial" / f"{split}_data.jsonl").write_text("")
    settings = {**read_yaml(DEFAULTS_FILE)["data"], "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(DataError) as err:
        load_dataset("redial", settings, copy)
    assert f"{split}_data.jsonl" in err.value.message and "no samples" in err.value.message


@pytest.mark.parametrize("name, content, fragment", [
    ("entity2entityId.pkl", {"a": "x"}, "entry 'a' -> 'x'"),
    ("entity2entityId.pkl", {}, "is empty"),
    ("subkg.pkl", {1: [1, 2, 3]}, "entry 1 holds 1"),
    ("movie_ids.pkl", ["a", "b"], "item 0 is 'a'"),
    ("movie_ids.pkl", [10 ** 9], "item 0 is 1000000000"),
    ("id2entity.pkl", {"x": 5}, "entry 'x' -> 5"),
    ("subkg.pkl", [1, 2], "expected a dict"),
])
def test_pickles_with_wrong_contents_name_the_file_and_entry(real_data_dir, tmp_path, name, content, fragment):
    root = tmp_path / "redial"
    root.mkdir()
    for other in ("entity2entityId.pkl", "id2entity.pkl", "movie_ids.pkl", "subkg.pkl"):
        if other != name:
            (root / other).symlink_to(real_data_dir / "redial" / other)
    (root / name).write_bytes(pickle.dumps(content))
    with pytest.raises(DataError) as err:
        read_release_pickles(root)
    assert str(root / name) in err.value.message and fragment in err.value.message


def _damaged_copy(run, tmp_path):
    copy = tmp_path / "runs" / "redial" / "popularity" / run.name
    shutil.copytree(run, copy)
    (copy / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()),
                                               "runs_root": str(tmp_path / "runs")}))
    return copy


def test_a_corrupt_results_database_keeps_the_run_and_says_how_to_rebuild(small, tmp_path):
    _, _, env, _ = small
    out = tmp_path / "runs"
    out.mkdir()
    (out / "results.sqlite").write_bytes(b"not a database, " * 200)
    proc = cli("run", "--model", "popularity", "--dataset", "redial", "--set", f"run.output_dir={out}", env=env)
    clean_error(proc, "results.sqlite", "--reindex")
    (run,) = (out / "redial" / "popularity").iterdir()
    assert json.loads((run / "metrics.json").read_text())["metrics"]["test/all/recall@50"] > 0
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert cli("runs", "--reindex", "--output-dir", str(out), env=env).returncode == 0
    table = cli("compare", "--dataset", "redial", "--output-dir", str(out), env=env)
    assert table.returncode == 0 and "| popularity | 1 |" in table.stdout


def test_damaged_run_files_get_clear_errors(small, tmp_path):
    _, _, env, run = small
    copy = _damaged_copy(run, tmp_path)
    weights = (copy / "model.pt").read_bytes()
    (copy / "model.pt").write_bytes(weights[: len(weights) // 2])
    clean_error(cli("evaluate", "--run", str(copy), env=env), "model.pt", "truncated or corrupt")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    import torch
    torch.save({"popularity": torch.zeros(3), "x": Evil()}, copy / "model.pt")
    proc = cli("evaluate", "--run", str(copy), env=env)
    clean_error(proc, "model.pt: refused to load", "system")
    assert "pwned" not in proc.stdout

    (copy / "model.pt").write_bytes(weights)
    (copy / "checkpoints").mkdir(exist_ok=True)
    (copy / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    clean_error(cli("run", "--resume", str(copy), env=env), "last.pt", "truncated or corrupt")

    (copy / "run.json").write_text('{"model": "popularity",\n "dataset": ')
    clean_error(cli("evaluate", "--run", str(copy), env=env), "run.json:2: malformed JSON")


def test_a_copied_run_dir_is_recorded_where_the_user_says(small, tmp_path):
    _, _, env, run = small
    loose = tmp_path / "loose"
    shutil.copytree(run, loose)
    clean_error(cli("evaluate", "--run", str(loose), env=env), "--output-dir")
    proc = cli("evaluate", "--run", str(loose), "--output-dir", str(tmp_path / "here"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "here" / "results.sqlite").exists() and not (tmp_path / "results.sqlite").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--set", "train.lr=-1"], "train.lr (from --set train.lr=-1): must be > 0"),
    (["--seed", "-3"], "run.seed"),
    (["--set", "eval.splits=[test,bogus]"], "unknown split(s) 'bogus'"),
    (["--set", "train.batch_size=0"], "train.batch_size"),
])
def test_out_of_range_settings_stop_before_anything_runs(small, tmp_path, args, fragment):
    _, _, env, _ = small
    proc = cli("run", "--model", "textcnn", "--dataset", "redial", "--set", f"run.output_dir={tmp_path}", *args,
               env=env)
    clean_error(proc, fragment)
    assert not (tmp_path / "redial").exists()                   # no run directory was created
