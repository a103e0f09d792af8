"""The command line as a user runs it, on the real data: run, compare, evaluate --dump, list, errors."""
import csv
import io
import json
import os
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow


def crsbench(*args, env, check=True):
    proc = subprocess.run([sys.executable, "-m", "crsbench", *args], capture_output=True, text=True,
                          env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"crsbench {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def env(real_data_dir, real_cache_dir, redial):   # `redial` builds the shared cache first
    return {**os.environ, "CRSBENCH_DATA": str(real_data_dir), "CRSBENCH_CACHE": str(real_cache_dir)}


def test_run_compare_evaluate(env, tmp_path):
    out = str(tmp_path / "runs")
    for model, seed in (("popularity", 1), ("popularity", 2), ("context_repeat", 1)):
        crsbench("run", "--model", model, "--dataset", "redial", "--seed", str(seed),
                 "--set", f"run.output_dir={out}", env=env)
    table = crsbench("compare", "--dataset", "redial", "--output-dir", out, "--csv",
                     str(tmp_path / "t.csv"), env=env).stdout
    assert "| popularity | 2 |" in table and "| context_repeat | 1 |" in table
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text()))}
    # popularity is deterministic: the two seeds agree, std 0
    assert float(rows["popularity"]["all/recall@50 std"]) == 0.0
    assert 0.10 < float(rows["popularity"]["all/recall@50 mean"]) < 0.25
    # repetition inflates `all` but not `dedup`
    assert float(rows["context_repeat"]["all/recall@1 mean"]) > 3 * float(rows["popularity"]["all/recall@1 mean"])
    assert float(rows["context_repeat"]["dedup/recall@1 mean"]) < float(rows["popularity"]["dedup/recall@1 mean"])
    run_dir = next((tmp_path / "runs" / "redial" / "popularity").iterdir())
    for name in ("config.yaml", "run.json", "metrics.json", "model.pt", "log.txt"):
        assert (run_dir / name).exists(), name
    before = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    # a run saved before run.tasks / run.init_from existed is evaluated with their defaults
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    del saved["run"]["tasks"], saved["run"]["init_from"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    result = crsbench("evaluate", "--run", str(run_dir), "--dump", env=env)
    assert "fill run.tasks, run.init_from" in result.stderr
    after = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert after == before
    lines = (run_dir / "predictions_test.jsonl").read_text().splitlines()
    assert len(lines) == 4897
    record = json.loads(lines[0])
    assert {"conv_id", "turn_index", "target", "rank", "top_items", "views"} <= set(record)


def test_list_and_errors(env, tmp_path):
    listing = crsbench("list", env=env).stdout
    for name in ("kgsf", "popularity", "context_repeat", "kbrd", "textcnn", "redial", "opendialkg",
                 "recall@k", "dist@n"):
        assert name in listing
    bad = crsbench("run", "--model", "popularty", "--dataset", "redial", env=env, check=False)
    assert bad.returncode == 2 and "did you mean 'popularity'" in bad.stderr and "Traceback" not in bad.stderr
    bad = crsbench("run", "--model", "popularity", "--dataset", "redial", "--set", "train.lrr=1",
                   "--set", f"run.output_dir={tmp_path}", env=env, check=False)
    assert bad.returncode == 2 and "did you mean 'lr'" in bad.stderr
    missing = crsbench("run", "--model", "popularity", "--dataset", "redial", "--data-dir",
                       str(tmp_path / "nowhere"), "--set", f"run.output_dir={tmp_path}",
                       env=env, check=False)
    assert missing.returncode == 2 and str(tmp_path / "nowhere") in missing.stderr
    assert "Traceback" not in missing.stderr


def test_compare_with_a_baseline_runs_listing_and_dry_run(env, tmp_path):
    """On the shared data: significance markers and p-values against popularity, the `runs` listing
    with a finished and a failed run, and --dry-run naming each value's layer."""
    out = str(tmp_path / "runs")
    for model in ("popularity", "context_repeat"):
        crsbench("run", "--model", model, "--dataset", "redial", "--set", f"run.output_dir={out}", env=env)
    table = crsbench("compare", "--dataset", "redial", "--output-dir", out, "--baseline", "popularity",
                     "--resamples", "2000", "--csv", str(tmp_path / "t.csv"), env=env)
    lines = table.stdout.splitlines()
    header = [c.strip() for c in lines[0].split("|")]
    repeat = dict(zip(header, [c.strip() for c in next(l for l in lines if l.startswith("| context_repeat |")).split("|")]))
    # repeating the context differs from popularity on `all`; on cold start (no context items) it IS
    # popularity, and the test must not mark it
    assert all(repeat[f"all/recall@{k}"].endswith("*") for k in (1, 10, 50))
    assert not any("*" in repeat[f"cold_start/recall@{k}"] for k in (1, 10, 50))
    assert "differs from popularity at p < 0.05" in table.stdout and f"wrote {tmp_path / 't.csv'}" in table.stderr
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text()))}
    assert float(rows["context_repeat"]["all/recall@1 p_paired"]) < 0.001
    assert rows["popularity"]["all/recall@1 p_paired"] == ""
    # a failed run is listed with its error; the data version is the shared data's
    bad = crsbench("run", "--model", "textcnn", "--dataset", "redial", "--set", f"run.output_dir={out}",
                   "--set", "model.channels=-4", env=env, check=False)
    assert bad.returncode != 0
    listing = crsbench("runs", "--output-dir", out, env=env).stdout
    assert listing.count(" finished ") == 2 and " failed " in listing
    meta = json.loads(next((tmp_path / "runs" / "redial" / "popularity").iterdir()).joinpath("run.json").read_text())
    assert meta["data"]["files"] and meta["data"]["fingerprint"][:10] in listing
    dry = crsbench("run", "--model", "kgsf", "--dataset", "redial", "--dry-run", "--set", "train.epochs=2", env=env)
    conv_epochs = next(line for line in dry.stdout.splitlines() if line.startswith("stages.conv.epochs:"))
    assert conv_epochs.split("#")[1].strip() == "--set train.epochs=2" and "2" in conv_epochs.split("#")[0]
    assert not (tmp_path / "runs" / "redial" / "kgsf").exists()
