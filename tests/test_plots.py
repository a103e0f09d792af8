"""`crsbench plot`: each figure reads the results index and run dirs, and shows the numbers `compare`
shows (means, stds and bands computed by hand here)."""
import json
import statistics

import numpy as np
import pytest
import yaml

from crsbench.datasets.loader import CurrentBuilds
from crsbench.errors import ConfigError
from crsbench.results import plots, size_order
from crsbench.results.outcomes import Outcomes, RecOutcomes, write_outcomes
from crsbench.results.compare import compare
from crsbench.results.row_tests import per_instance
from crsbench.results.store import ResultStore
from crsbench.run_dir import RunDir

DATA = "d" * 64


def _run(tmp_path, store, name, model, seed, metrics, tag="", config=None, history=(), train_conversations=None):
    run = RunDir(tmp_path / "runs" / "redial" / name / f"r-seed{seed}")
    run.path.mkdir(parents=True)
    data = {"files": DATA, "fingerprint": DATA}
    if train_conversations is not None:
        data["train_conversations"] = train_conversations
    run.write_meta({"run_id": f"{name}{seed}", "model": model, "dataset": "redial", "seed": seed, "tag": tag,
                    "status": "finished", "data": data})
    run.history.write_text("".join(json.dumps(h) + "\n" for h in history))
    config = config or {"model": {}, "stages": {}, "data": {}}
    run.config_file.write_text(yaml.safe_dump(config))
    store.record_run(run_id=f"{name}{seed}", model=model, dataset="redial", tag=tag, seed=seed, config=config,
                     code_version="t", metrics=metrics, timings={}, run_dir=str(run.path), status="finished",
                     recorded_at=f"t{seed}", data_version=DATA,
                     data_fingerprint=DATA + str(train_conversations or ""))
    return run


class _BuildC(CurrentBuilds):
    def content(self, name, data_settings):
        return "c" * 64


def test_ablation_bars_are_the_compare_numbers(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    for tag, base in (("", 0.10), ("-KG-D", 0.06), ("-copy", 0.03)):
        for seed in (1, 2):
            metrics = {f"test/gen/dist@{n}": base * n + seed / 100 for n in (2, 3, 4)}
            metrics["test/gen/item_ratio"] = base + seed / 50
            _run(tmp_path, store, f"kgsf{tag}", "kgsf", seed, metrics, tag=tag)
    # a third -copy seed made before the init_from fix (its source is gone): the table counts it, the
    # figure leaves it out and says so
    metrics = {f"test/gen/dist@{n}": 0.9 for n in (2, 3, 4)} | {"test/gen/item_ratio": 0.9}
    exposed = _run(tmp_path, store, "kgsf-copy", "kgsf", 3, metrics, tag="-copy",
                   config={"model": {}, "stages": {}, "data": {},
                           "run": {"init_from": str(tmp_path / "gone"), "tasks": ["conv"]}})
    exposed.write_meta({**exposed.read_meta(), "started": "2026-11-30T00:00:00+00:00"})
    assert compare(store, "redial", data_version=DATA).rows[-1].seeds == 3
    # -KG-D's seed 3 trained the recommender only: a seed of the table's row, not of the figure's bars
    _run(tmp_path, store, "kgsf-KG-D", "kgsf", 3, {"test/all/recall@50": 0.3}, tag="-KG-D")
    notes: list[str] = []
    plotted = plots.ablation(store, "redial", tmp_path / "fig3.png", DATA, notes=notes)
    assert list(plotted) == ["kgsf", "kgsf -KG-D", "kgsf -copy"]
    assert compare(store, "redial", data_version=DATA).row("kgsf -KG-D").seeds == 3
    assert {n for _, _, n in plotted["kgsf -KG-D"].values()} == {2}
    assert not any("preprocessing builds" in note for note in notes)        # none recorded: no claim
    for seed in (1, 2):                       # the variants' runs on two builds: the figure says so
        for name in ("kgsf", "kgsf-KG-D", "kgsf-copy"):
            meta = RunDir(tmp_path / "runs" / "redial" / name / f"r-seed{seed}")
            content = "b" * 64 if name == "kgsf" else "c" * 64
            meta.write_meta({**meta.read_meta(), "data": {**meta.read_meta()["data"], "content": content}})
    notes = []
    plots.ablation(store, "redial", tmp_path / "fig3.png", DATA, notes=notes)
    assert (f"the bars come from 2 preprocessing builds of the data (content bbbbbbbbbb: kgsf; content cccccccccc: "
            f"kgsf -KG-D, kgsf -copy)") in " ".join(notes)
    assert any("1 run(s) left out, made before the fix" in note and str(exposed.path) in note for note in notes)
    # --same-build: only the bars of this code's build (here "c…"), and no mixed-build note
    notes = []
    one_build = plots.ablation(store, "redial", tmp_path / "fig3.png", DATA, notes=notes, builds=_BuildC())
    assert list(one_build) == ["kgsf -KG-D", "kgsf -copy"]
    assert not any("preprocessing builds of the data" in note for note in notes)
    table = compare(store, "redial", data_version=DATA, skip_fixed=True)
    assert table.rows[-1].seeds == 2
    for row in table.rows:
        for metric, (mean, std, n) in plotted[row.label].items():
            assert (mean, std, n) == (row.cells[metric].mean, row.cells[metric].std, len(row.cells[metric].values))
    assert plotted["kgsf"]["gen/dist@2"][0] == pytest.approx(statistics.fmean([0.21, 0.22]))
    assert (tmp_path / "fig3.png").read_bytes()[:4] == b"\x89PNG"


def test_mim_curve_bands_over_seeds(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    for mim, values in ((True, [[0.1, 0.2, 0.3], [0.2, 0.3, 0.5]]), (False, [[0.3, 0.3], [0.1, 0.5]])):
        for seed, curve in enumerate(values, 1):
            history = [{"stage": "pretrain", "epoch": 1, "train_loss": 1.0}] + \
                      [{"stage": "rec", "epoch": e, "test_curve": {"all/recall@10": v / 2, "all/recall@50": v}}
                       for e, v in enumerate(curve, 1)]
            _run(tmp_path, store, f"kgsf{'' if mim else '-MIM'}", "kgsf", seed, {"test/all/recall@50": 0.3},
                 tag="" if mim else "-MIM", config={"model": {"mim": mim}, "stages": {}, "data": {}},
                 history=history)
    plotted = plots.mim_curve(store, "redial", tmp_path / "fig2.svg", DATA)
    epochs, mean, low, high = plotted["KGSF"]["all/recall@50"]
    assert epochs == [1, 2, 3] and mean == pytest.approx([0.15, 0.25, 0.4]) and low == [0.1, 0.2, 0.3]
    assert high == [0.2, 0.3, 0.5]
    assert plotted["KGSF -MIM"]["all/recall@10"][1] == pytest.approx([0.1, 0.2])
    assert "for this curve only" in (tmp_path / "fig2.svg").read_text()
    # seed 1 trained again: it counts once, with its latest run
    _run(tmp_path, store, "kgsfz", "kgsf", 1, {"test/all/recall@50": 0.3},     # recorded after kgsf1
         config={"model": {"mim": True}, "stages": {}, "data": {}},
         history=[{"stage": "rec", "epoch": e, "test_curve": {"all/recall@10": v / 2, "all/recall@50": v}}
                  for e, v in enumerate([0.3, 0.4, 0.5], 1)])
    epochs, mean, low, high = plots.mim_curve(store, "redial", tmp_path / "fig2.svg", DATA)["KGSF"]["all/recall@50"]
    assert mean == pytest.approx([0.25, 0.35, 0.5]) and low == [0.2, 0.3, 0.5]
    with pytest.raises(ConfigError, match="eval.test_curve"):
        plots.mim_curve(ResultStore(tmp_path / "empty.sqlite"), "redial", tmp_path / "x.png")


def test_curves_and_data_curve(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    history = [{"stage": "conv", "epoch": e, "train_loss": 5 - e, "valid": {"gen/ppl": 100 - e},
                "generation": {"gen/dist@2": 0.1 * e}} for e in (1, 2, 3)]
    run = _run(tmp_path, store, "transformer", "transformer", 1, {"test/gen/ppl": 90.0}, history=history)
    assert plots.curves([str(run.path)], "gen/dist@2", tmp_path / "c.png")["transformer seed 1"] == \
        ([1, 2, 3], [pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3)])
    assert plots.curves([str(run.path)], "gen/ppl", tmp_path / "p.png", stage="conv")["transformer seed 1"][1] == \
        [99, 98, 97]
    with pytest.raises(ConfigError, match="no 'gen/dist@3'"):
        plots.curves([str(run.path)], "gen/dist@3", tmp_path / "x.png")
    for n, r50 in ((800, [0.30, 0.32]), (1600, [0.34, 0.36])):
        for seed, value in enumerate(r50, 1):
            _run(tmp_path, store, f"kbrd-{n}", "kbrd", seed, {"test/all/recall@10": value / 2, "test/all/recall@50": value},
                 config={"model": {}, "stages": {}, "data": {"train_fraction": n / 1600}}, train_conversations=n)
    plotted = plots.data_curve(store, "redial", tmp_path / "d.png", DATA, extrapolate_to=3200)
    assert plotted["kbrd"]["test/all/recall@50"] == [(800, pytest.approx(0.31), pytest.approx(statistics.stdev([0.30, 0.32])), 2),
                                                    (1600, pytest.approx(0.35), pytest.approx(statistics.stdev([0.34, 0.36])), 2)]
    trend = plotted["trends"]["kbrd"]["test/all/recall@50"]
    assert trend.per_doubling == pytest.approx(0.04) and trend.at(3200) == pytest.approx(0.39)
    table = plots.data_curve_table(plotted, 3200)
    assert "| kbrd | all/recall@50 | 0.3100 ± 0.0141 | 0.3500 ± 0.0141 | +0.0400 | 0.3900 (" in table
    for n, r50 in ((800, 0.33), (1600, 0.33)):               # a flat model: better with less data, then not
        _run(tmp_path, store, f"kgsf-{n}", "kgsf", 1, {"test/all/recall@10": 0.1, "test/all/recall@50": r50},
             config={"model": {"mim": False}, "stages": {}, "data": {}}, train_conversations=n)
    plotted = plots.data_curve(store, "redial", tmp_path / "d.png", DATA)
    table = plots.data_curve_table(plotted)        # these runs stored no outcomes: a swap of means, untested
    assert "n = 800: kgsf -MIM ≈ kbrd; n = 1,600: kbrd ≈ kgsf -MIM" in table
    assert "all/recall@50: the order does not change significantly with data (2 pair(s) untested" in table


def _ranks_run(tmp_path, store, name, n, hits, seed=1):
    """A KBRD-like run at n training conversations whose test R@50 is a hit on `hits` of 100 instances."""
    run = _run(tmp_path, store, name, name.split("-")[0], seed, {"test/all/recall@10": 0.0,
               "test/all/recall@50": float(hits.sum()) / hits.size},
               config={"model": {}, "stages": {}, "data": {}}, train_conversations=n)
    keys = np.array([f"c{i}|1|7" for i in range(hits.size)])
    write_outcomes(run.outcomes("test"), Outcomes(rec=RecOutcomes(keys, np.where(hits, 1, 100).astype(np.int64),
                                                                   {"all": np.ones(hits.size, dtype=bool)})))


def test_data_curve_order_changes_only_when_a_paired_test_says_so(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    few, many = np.arange(100) < 30, np.arange(100) < 60
    _ranks_run(tmp_path, store, "kbrd-800", 800, many)
    _ranks_run(tmp_path, store, "redial-800", 800, few)
    _ranks_run(tmp_path, store, "kbrd-1600", 1600, few)          # kbrd falls behind redial: a real reversal
    _ranks_run(tmp_path, store, "redial-1600", 1600, many)
    _ranks_run(tmp_path, store, "textcnn-800", 800, many)         # textcnn = kbrd at 800: a tie, not an order
    _ranks_run(tmp_path, store, "textcnn-1600", 1600, many)
    plotted = plots.data_curve(store, "redial", tmp_path / "d.png", DATA)
    assert plotted["runs"]["kbrd"] == {800: [str(tmp_path / "runs/redial/kbrd-800/r-seed1")],
                                       1600: [str(tmp_path / "runs/redial/kbrd-1600/r-seed1")]}
    means = {label: {n: m for n, m, *_ in plotted[label]["test/all/recall@50"]} for label in ("kbrd", "redial", "textcnn")}
    tests = size_order.pair_tests(means, plotted["runs"], plotted["seeds"], "test/all/recall@50")
    by_pair = {(t.size, t.better, t.worse): t for t in tests}
    assert by_pair[(800, "kbrd", "redial")].p < 1e-3 and by_pair[(1600, "redial", "kbrd")].p < 1e-3
    tie = [t for t in tests if t.size == 800 and {t.better, t.worse} == {"kbrd", "textcnn"}][0]
    assert tie.p == 1.0 and not tie.significant()
    flips = size_order.reversals(tests)
    assert [(a.better, a.size, b.better, b.size) for a, b in flips] == [("kbrd", 800, "redial", 1600)]
    orders = size_order.size_orders(means, tests)
    assert [o.size for o in orders] == [800, 1600]
    assert orders[0].render().startswith("kbrd ≈ textcnn (p = 1) > redial (p = ")
    # a model run at one size only leaves the other sizes' orders in place
    lone = {**means, "kgsf": {1600: 0.5}}
    lone_tests = size_order.pair_tests(lone, plotted["runs"], plotted["seeds"], "test/all/recall@50")     # kgsf's untested
    assert [o.size for o in size_order.size_orders(lone, lone_tests)] == [800, 1600]
    table = plots.data_curve_table(plotted)
    assert "all/recall@50: the order changes with data: kbrd > redial at n = 800" in table
    assert "untested" not in table.split("all/recall@50:")[1]


def test_data_curve_pairs_two_models_on_the_seeds_both_have(tmp_path):
    """A model with seeds 1-2 against one with seed 1 only is tested on seed 1 (as `compare` pairs
    its rows): here the seed-1 runs are identical, so p = 1, where averaging seed 2 in would differ."""
    store = ResultStore(tmp_path / "r.sqlite")
    few, many = np.arange(100) < 30, np.arange(100) < 60
    _ranks_run(tmp_path, store, "kbrd-800", 800, many, seed=1)
    _ranks_run(tmp_path, store, "kbrd-800", 800, few, seed=2)
    _ranks_run(tmp_path, store, "redial-800", 800, many, seed=1)
    plotted = plots.data_curve(store, "redial", tmp_path / "d.png", DATA)
    means = {label: {n: m for n, m, *_ in plotted[label]["test/all/recall@50"]} for label in ("kbrd", "redial")}
    (test,) = size_order.pair_tests(means, plotted["runs"], plotted["seeds"], "test/all/recall@50")
    assert (test.better, test.worse) == ("redial", "kbrd") and test.p == 1.0
    both = per_instance("all/recall@50", plotted["runs"]["kbrd"][800], "test")
    one = per_instance("all/recall@50", plotted["runs"]["redial"][800], "test")
    assert sum(both.values()) == 45 and sum(one.values()) == 60      # what averaging seed 2 in would test
    # seed 2 trained again: the seed counts once, with its latest run (as `compare` shows it)
    _ranks_run(tmp_path, store, "kbrd-800b", 800, many, seed=2)
    plotted = plots.data_curve(store, "redial", tmp_path / "d.png", DATA)
    assert plotted["kbrd"]["test/all/recall@50"] == [(800, 0.6, 0.0, 2)]
    assert plotted["runs"]["kbrd"][800] == [str(tmp_path / "runs/redial/kbrd-800/r-seed1"),
                                            str(tmp_path / "runs/redial/kbrd-800b/r-seed2")]
