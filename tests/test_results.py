"""The SQLite results store and the comparison table (means and sample std computed by hand)."""
import csv
import io
import statistics

import pytest

from crsbench.results.compare import compare
from crsbench.results.store import ResultStore, code_version


def _record(store, run_id, model, seed, r10, tag="", status="finished", dataset="redial"):
    store.record_run(run_id=run_id, model=model, dataset=dataset, tag=tag, seed=seed, config={"x": 1},
                     code_version="t", metrics={"test/all/recall@10": r10, "test/dedup/recall@10": r10 / 2,
                                                "valid/all/recall@10": 0.9},
                     timings={"total_s": 1.0}, run_dir="/tmp", status=status)


def test_store_round_trip(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    _record(store, "a", "kgsf", 1, 0.2)
    run = store.get_run("a")
    assert run["model"] == "kgsf" and run["config"] == {"x": 1}
    assert store.metrics("a")["test/all/recall@10"] == 0.2
    assert store.timings("a") == {"total_s": 1.0}
    _record(store, "a", "kgsf", 1, 0.3)                       # re-recording replaces
    assert store.metrics("a")["test/all/recall@10"] == 0.3
    assert len(store.runs()) == 1 and ResultStore(tmp_path / "r.sqlite").runs()[0]["run_id"] == "a"
    assert code_version().startswith("0.1.0")


def test_comparison_table(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    _record(store, "k1", "kgsf", 1, 0.10)
    _record(store, "k2", "kgsf", 2, 0.20)
    _record(store, "k3", "kgsf", 3, 0.30)
    _record(store, "k3-other", "kgsf", 3, 0.99)               # a newer run of seed 3 ...
    _record(store, "k3", "kgsf", 3, 0.30)                     # ... until k3 is recorded again: latest wins
    _record(store, "m1", "kgsf", 1, 0.05, tag="-MIM")
    _record(store, "p1", "popularity", 1, 0.06)
    _record(store, "x", "kbrd", 1, 0.5, status="running")    # unfinished: ignored
    _record(store, "o", "kgsf", 1, 0.7, dataset="opendialkg")
    table = compare(store, "redial")
    assert table.columns == ["all/recall@10", "dedup/recall@10"]
    rows = {r["model"]: r for r in table.rows}
    assert set(rows) == {"kgsf", "kgsf -MIM", "popularity"}
    mean, std, n = rows["kgsf"]["cells"]["all/recall@10"]
    assert rows["kgsf"]["seeds"] == 3
    assert n == 3 and mean == pytest.approx(0.2) and std == pytest.approx(statistics.stdev([0.1, 0.2, 0.3]))
    assert rows["popularity"]["cells"]["all/recall@10"] == (pytest.approx(0.06), None, 1)
    md = table.to_markdown()
    assert "| kgsf | 3 | 0.2000 ± 0.1000 | 0.1000 ± 0.0500 |" in md
    parsed = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert parsed[0]["model"] == "kgsf" and float(parsed[0]["all/recall@10 std"]) == pytest.approx(0.1)


def test_recommendation_and_conversation_runs_of_a_seed_fill_one_row(tmp_path):
    """A rec-only run and a later conv-only run (run.tasks, run.init_from) of the same seed are one
    seed; a metric measured on fewer seeds than its row is marked with its count."""
    store = ResultStore(tmp_path / "r.sqlite")
    for seed, r10 in ((1, 0.1), (2, 0.3)):
        _record(store, f"rec{seed}", "kgsf", seed, r10)
    store.record_run(run_id="conv1", model="kgsf", dataset="redial", tag="", seed=1, config={},
                     code_version="t", metrics={"test/gen/dist@2": 0.4}, timings={}, run_dir="/tmp",
                     status="finished")
    (row,) = compare(store, "redial").rows
    assert row["seeds"] == 2
    assert row["cells"]["all/recall@10"][:1] == (pytest.approx(0.2),)     # both rec runs kept
    assert row["cells"]["gen/dist@2"] == (pytest.approx(0.4), None, 1)
    assert "0.4000 (n=1)" in compare(store, "redial").to_markdown()
