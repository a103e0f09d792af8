"""The results index (SQLite, derived from run dirs) and the comparison table: means and sample std
by hand, data versions never mixed, a corrupt or old index, reindexing from run directories."""
import csv
import io
import itertools
import json
import sqlite3
import statistics

import pytest
import yaml

from crsbench.datasets.loader import CurrentBuilds
from crsbench.errors import DataError
from crsbench.results.compare import compare
from crsbench.results.store import ResultStore, code_version, reindex, results_db
from crsbench.run_dir import RunDir

_clock = itertools.count()
DATA = "d" * 64


def _record(store, run_id, model, seed, r10, tag="", status="finished", dataset="redial", data=DATA,
            fingerprint=None, protocol="crsbench"):
    store.record_run(run_id=run_id, model=model, dataset=dataset, tag=tag, seed=seed, config={"x": 1},
                     code_version="t", metrics={"test/all/recall@10": r10, "test/dedup/recall@10": r10 / 2,
                                                "valid/all/recall@10": 0.9},
                     timings={"total_s": 1.0}, run_dir="/tmp", status=status,
                     recorded_at=f"2026-01-01T00:00:{next(_clock):02d}", data_version=data,
                     data_fingerprint=fingerprint or data + "-settings", protocol=protocol)


def test_store_round_trip(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    _record(store, "a", "kgsf", 1, 0.2)
    run = store.get_run("a")
    assert run["model"] == "kgsf" and run["config"] == {"x": 1}
    assert run["data_version"] == DATA and run["eval_data_version"] == DATA and run["protocol"] == "crsbench"
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
    table = compare(store, "redial", data_version=DATA)
    assert table.columns == ["all/recall@10", "dedup/recall@10"]
    rows = {r.label: r for r in table.rows}
    assert set(rows) == {"kgsf", "kgsf -MIM", "popularity"}
    cell = rows["kgsf"].cells["all/recall@10"]
    assert rows["kgsf"].seeds == 3 and len(cell.values) == 3
    assert cell.mean == pytest.approx(0.2) and cell.std == pytest.approx(statistics.stdev([0.1, 0.2, 0.3]))
    assert rows["popularity"].cells["all/recall@10"].std is None
    md = table.to_markdown()
    assert "| kgsf | 3 | 0.2000 ± 0.1000 | 0.1000 ± 0.0500 |" in md and "data" not in md.splitlines()[0]
    parsed = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert parsed[0]["model"] == "kgsf" and float(parsed[0]["all/recall@10 std"]) == pytest.approx(0.1)
    assert parsed[0]["data"] == DATA + "-settings"


def test_recommendation_and_conversation_runs_of_a_seed_fill_one_row(tmp_path):
    """A rec-only run and a later conv-only run (run.tasks, run.init_from) of the same seed are one
    seed; a metric measured on fewer seeds than its row is marked with its count."""
    store = ResultStore(tmp_path / "r.sqlite")
    for seed, r10 in ((1, 0.1), (2, 0.3)):
        _record(store, f"rec{seed}", "kgsf", seed, r10)
    store.record_run(run_id="conv1", model="kgsf", dataset="redial", tag="", seed=1, config={},
                     code_version="t", metrics={"test/gen/dist@2": 0.4}, timings={}, run_dir="/tmp",
                     status="finished", recorded_at="2026-02-01", data_version=DATA,
                     data_fingerprint=DATA + "-settings")
    (row,) = compare(store, "redial", data_version=DATA).rows
    assert row.seeds == 2
    assert row.cells["all/recall@10"].mean == pytest.approx(0.2)       # both rec runs kept
    assert row.cells["gen/dist@2"].values == [pytest.approx(0.4)]
    assert "0.4000 (n=1)" in compare(store, "redial", data_version=DATA).to_markdown()


def test_runs_on_other_data_are_left_out_by_default_and_never_merged(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    old = "o" * 64
    _record(store, "new1", "kbrd", 1, 0.30)
    _record(store, "new2", "kbrd", 2, 0.32)
    _record(store, "old1", "kbrd", 1, 0.90, data=old)
    _record(store, "old2", "kbrd", 2, 0.92, data=old)
    _record(store, "set1", "kbrd", 3, 0.50, fingerprint=DATA + "-other-settings")   # same files, other settings
    _record(store, "paper1", "kbrd", 1, 0.40, protocol="paper")
    table = compare(store, "redial", data_version=DATA)
    assert "2 finished run(s) on other data versions left out" in table.to_markdown()
    assert "replaced by a later run" not in table.to_markdown()
    by_key = {(r.data, r.protocol): r for r in table.rows}
    assert by_key[(DATA + "-settings", "crsbench")].cells["all/recall@10"].values == [0.30, 0.32]
    assert by_key[(DATA + "-other-settings", "crsbench")].seeds == 1
    assert by_key[(DATA + "-settings", "paper")].seeds == 1             # a protocol is its own row
    assert table.show_data and table.show_protocol
    everything = compare(store, "redial", data_version=None)
    assert len(everything.rows) == 4 and everything.show_data
    header = everything.to_markdown().splitlines()[0]
    assert "| data |" in header and "| protocol |" in header
    old_row = next(r for r in everything.rows if r.data == old + "-settings")
    assert old_row.cells["all/recall@10"].values == [0.90, 0.92]


def _fake_run(root, name, model, seed, r10, status="finished", content=None):
    run = RunDir.create(root, "redial", model, "", seed)
    data = {"dataset": "redial", "files": DATA, "fingerprint": DATA + "-s"}
    run.write_meta({"run_id": run.run_id(), "model": model, "dataset": "redial", "status": status,
                    "started": "2026-01-01T00:00:00+00:00", "runs_root": str(root),
                    "data": {**data, **({"content": content} if content else {})}})
    run.config_file.write_text(yaml.safe_dump({"run": {"seed": seed, "tag": ""}}))
    run.metrics_file.write_text(json.dumps({"metrics": {"test/all/recall@10": r10}, "timings": {},
                                            "recorded_at": f"2026-01-01T00:{seed:02d}:00", "code_version": "t"}))
    return run


def test_reindex_rebuilds_the_index_from_run_directories(tmp_path):
    root = tmp_path / "runs"
    for seed, r10 in ((1, 0.1), (2, 0.3)):
        _fake_run(root, f"p{seed}", "popularity", seed, r10)
    _fake_run(root, "f", "kbrd", 1, 0.9, status="failed")
    count, skipped = reindex(root)
    assert (count, skipped) == (2, [])
    (row,) = compare(results_db(root), "redial", data_version=DATA).rows
    assert row.cells["all/recall@10"].values == [0.1, 0.3]
    # a corrupt database: a clear error that names it and says how to rebuild it
    (root / "results.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataError) as err:
        results_db(root).runs()
    assert "results.sqlite" in err.value.message and "--reindex" in err.value.hint
    reindex(root)
    assert len(results_db(root).runs()) == 2
    # an index of an older schema is rebuilt from the run dirs when opened
    (root / "results.sqlite").unlink()
    with sqlite3.connect(root / "results.sqlite") as db:
        db.execute("CREATE TABLE runs (run_id TEXT)")
        db.execute("PRAGMA user_version = 1")
    assert len(results_db(root).runs()) == 2


def test_a_later_run_of_the_same_row_and_seed_replaces_the_earlier_and_says_so(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    _record(store, "short1", "redial", 1, 0.10)              # e.g. an under-trained run, then the row again
    _record(store, "long1", "redial", 1, 0.30)
    _record(store, "same2", "redial", 2, 0.20)
    _record(store, "again2", "redial", 2, 0.20)              # the same result again: nothing hidden
    table = compare(store, "redial", data_version=DATA)
    assert table.rows[0].cells["all/recall@10"].values == [0.30, 0.20]
    assert "1 earlier run(s) replaced by a later run of the same row and seed" in table.to_markdown()


def test_a_row_whose_runs_started_on_different_preprocessing_builds_says_so(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "t1", "textcnn", 1, 0.1, content="a" * 64)
    _fake_run(root, "t2", "textcnn", 2, 0.2, content="a" * 64)
    _fake_run(root, "k1", "kbrd", 1, 0.3, content="a" * 64)
    _fake_run(root, "p1", "popularity", 1, 0.3)                   # every run from before digests: no note
    reindex(root)
    assert "build" not in compare(results_db(root), "redial", data_version=DATA).to_markdown()
    _fake_run(root, "t3", "textcnn", 3, 0.3, content="b" * 64)
    _fake_run(root, "k2", "kbrd", 2, 0.4)                         # from before digests, beside a known build
    reindex(root)
    notes = sorted(n for n in compare(results_db(root), "redial", data_version=DATA).notes if "build" in n)
    notes.reverse()                                               # textcnn's, then kbrd's
    assert len(notes) == 2, notes
    assert notes[0].startswith("textcnn: its runs started on 2 preprocessing builds")
    assert "aaaaaaaaaa, bbbbbbbbbb" in notes[0] and "unknown" not in notes[0]
    assert notes[1].startswith("kbrd: its runs started on one preprocessing build (content aaaaaaaaaa), and 1 "
                               "run(s) predate the content record, so their build is unknown")
    assert "--same-build" in notes[1]


def test_compare_keeps_only_the_rows_asked_for_and_notes_only_their_runs(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "t1", "textcnn", 1, 0.1, content="a" * 64)
    _fake_run(root, "t2", "textcnn", 2, 0.2, content="b" * 64)        # a mixed-build row
    _fake_run(root, "k1", "kbrd", 1, 0.3, content="a" * 64)
    reindex(root)
    whole = compare(results_db(root), "redial", data_version=DATA)
    assert any(n.startswith("textcnn:") for n in whole.notes)
    kbrd_only = compare(results_db(root), "redial", data_version=DATA, keep=lambda key: key[0] == "kbrd")
    assert [r.model for r in kbrd_only.rows] == ["kbrd"] and not kbrd_only.notes



class _OneBuild(CurrentBuilds):
    """This code's build of every dataset is content "a…" (no preprocessing in a unit test)."""

    def content(self, name, data_settings):
        assert name == "redial" and "dir" not in data_settings and "cache_dir" not in data_settings
        return "a" * 64


def test_compare_can_keep_only_some_seeds_and_only_the_runs_of_this_codes_build(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root, "t1", "textcnn", 1, 0.1, content="b" * 64)        # an older build
    _fake_run(root, "t2", "textcnn", 2, 0.2, content="a" * 64)
    _fake_run(root, "t3", "textcnn", 3, 0.3, content="a" * 64)
    resumed = _fake_run(root, "t4", "textcnn", 4, 0.4, content="a" * 64)
    resumed.update_meta(data={**resumed.read_meta()["data"], "content_at_resume": "c" * 64})
    _fake_run(root, "k1", "kbrd", 1, 0.5)                             # from before content digests
    reindex(root)
    store = results_db(root)
    assert [len(r.cells["all/recall@10"].values) for r in compare(store, "redial", data_version=DATA).rows] == [1, 4]
    same = compare(store, "redial", data_version=DATA, builds=_OneBuild())
    (row,) = same.rows
    assert row.model == "textcnn" and row.cells["all/recall@10"].values == [0.2, 0.3]
    assert any(n.startswith("3 finished run(s) left out as not made on the preprocessing build") for n in same.notes)
    assert not any("its runs started on" in n for n in same.notes)    # nothing mixed is left to note
    some = compare(store, "redial", data_version=DATA, seeds={1, 3})
    assert {(r.model, tuple(r.cells["all/recall@10"].values)) for r in some.rows} == {("kbrd", (0.5,)),
                                                                                       ("textcnn", (0.1, 0.3))}
