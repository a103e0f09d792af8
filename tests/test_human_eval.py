"""Human evaluation: blind sheet export, score import/validation, means and Fleiss' kappa."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from loguru import logger

from crsbench.errors import ConfigError, DataError
from crsbench.human_eval import export_sheet, fleiss_kappa, format_report, import_scores, key_path

SYSTEMS = {"kgsf": ("kgsf", ""), "kgsf_nokg": ("kgsf", "nokg"), "transformer": ("transformer", "")}


def _make_run(root: Path, label: str, sample_ids, dump: bool = True) -> Path:
    model, tag = SYSTEMS[label]
    run = root / label
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": f"redial/{label}/x", "model": model,
                                              "dataset": "redial", "status": "finished"}))
    (run / "config.yaml").write_text(f"run:\n  tag: '{tag}'\n  seed: 0\n")
    if dump:
        lines = [{"task": "rec", "sample_id": 500 + i, "ranked": [1, 2]} for i in range(3)]
        lines += [{"task": "conv", "sample_id": sid, "conv_id": f"c{sid}", "turn_index": 1,
                   "context": [f"hi i like movie {sid}", "what genre?"], "gold": f"gold {sid}",
                   "generated": f"{label} says {sid}"} for sid in sample_ids]
        (run / "predictions_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    # sample_ids 0-9 are in every run; 10 and 11 only in the first, so 10 are eligible
    return [_make_run(tmp_path / "runs", "kgsf", range(12)),
            _make_run(tmp_path / "runs", "kgsf_nokg", range(10)),
            _make_run(tmp_path / "runs", "transformer", range(10))]


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_rows_every_system_once_and_key(runs, tmp_path):
    out = tmp_path / "sheet.csv"
    summary = export_sheet(runs, out, n=3, seed=1)
    assert summary["rows"] == 9 and summary["dialogues"] == 3
    assert summary["systems"] == ["kgsf", "kgsf_nokg", "transformer"]
    rows = _rows(out)
    assert list(rows[0]) == ["item_id", "dialogue", "context", "response", "fluency", "informativeness"]
    assert len(rows) == 9 and len({r["item_id"] for r in rows}) == 9
    key = json.loads(key_path(out).read_text())
    assert key_path(out).name == "sheet.key.json" and key["seed"] == 1 and key["n"] == 3
    for dialogue in ("1", "2", "3"):
        mine = [r for r in rows if r["dialogue"] == dialogue]
        assert sorted(key["items"][r["item_id"]] for r in mine) == summary["systems"]
        assert [r["item_id"] for r in mine] == [f"d00{dialogue}-S{k}" for k in (1, 2, 3)]
        sid = key["dialogues"][dialogue]
        assert 0 <= sid < 10                                       # only ids present in every run
        for r in mine:   # the key de-anonymises correctly: the response is that system's output
            assert r["response"] == f"{key['items'][r['item_id']]} says {sid}"
            assert r["context"] == f"hi i like movie {sid} \n what genre?"
            assert r["fluency"] == "" and r["informativeness"] == ""


def test_codes_do_not_follow_a_fixed_system_order(runs, tmp_path):
    varied = False
    for seed in range(5):
        export_sheet(runs, tmp_path / f"s{seed}.csv", n=3, seed=seed)
        items = json.loads(key_path(tmp_path / f"s{seed}.csv").read_text())["items"]
        orders = {tuple(items[f"d{d:03d}-S{k}"] for k in (1, 2, 3)) for d in (1, 2, 3)}
        varied = varied or len(orders) > 1
    assert varied, "every dialogue lists the systems in the same order: the codes reveal the system"


def test_export_is_deterministic_per_seed(runs, tmp_path):
    export_sheet(runs, tmp_path / "a.csv", n=3, seed=1)
    export_sheet(runs, tmp_path / "b.csv", n=3, seed=1)
    export_sheet(runs, tmp_path / "c.csv", n=3, seed=2)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    sample = lambda name: json.loads(key_path(tmp_path / name).read_text())["dialogues"]
    assert sample("a.csv") == sample("b.csv")
    assert sample("a.csv") != sample("c.csv")


def test_export_errors(runs, tmp_path):
    lacking = _make_run(tmp_path / "more", "transformer", range(10), dump=False)
    with pytest.raises(DataError) as err:
        export_sheet(runs[:2] + [lacking], tmp_path / "x.csv", n=3, seed=1)
    assert "predictions_test.jsonl" in err.value.message and "crsbench evaluate --run" in err.value.hint
    with pytest.raises(DataError) as err:
        export_sheet(runs, tmp_path / "x.csv", n=11, seed=1)
    assert "only 10 sample_id" in err.value.message and "n=10" in err.value.hint
    with pytest.raises(ConfigError, match="already used"):
        export_sheet(runs + [lacking], tmp_path / "x.csv", n=3, seed=1)
    assert not (tmp_path / "x.csv").exists()


# Two annotators, scores chosen per system (A always; B differs on some items):
#   fluency:         A: kgsf 2, kgsf_nokg 1, transformer 0;  B: same, but transformer 1 in dialogue 1
#   informativeness: A: kgsf 2, kgsf_nokg 1, transformer 1;  B: kgsf 1, kgsf_nokg 1, transformer 0
# Means over 2 annotators x 3 dialogues (6 ratings each):
#   fluency: kgsf 12/6 = 2, kgsf_nokg 1, transformer 1/6;  informativeness: 9/6 = 1.5, 1, 3/6 = 0.5
# Fleiss, fluency, 9 items x categories (0,1,2): 3x[0,0,2], 3x[0,2,0], 1x[1,1,0], 2x[2,0,0]
#   p = (5, 7, 6)/18, P_e = 110/324 = 55/162; P_i = 1 except 0 for [1,1,0] -> P_bar = 8/9
#   kappa = (144/162 - 55/162) / (107/162) = 89/107 ~ 0.8318
# Fleiss, informativeness: 3x[0,1,1], 3x[0,2,0], 3x[1,1,0]; p = (3, 12, 3)/18, P_e = 1/2,
#   P_bar = 1/3 -> kappa = (1/3 - 1/2) / (1/2) = -1/3
SCORES = {
    "A": lambda sys, d: ({"kgsf": 2, "kgsf_nokg": 1, "transformer": 0}[sys],
                         {"kgsf": 2, "kgsf_nokg": 1, "transformer": 1}[sys]),
    "B": lambda sys, d: ({"kgsf": 2, "kgsf_nokg": 1, "transformer": 1 if d == "1" else 0}[sys],
                         {"kgsf": 1, "kgsf_nokg": 1, "transformer": 0}[sys]),
}


def _fill(sheet: Path, out: Path, scores, drop: str | None = None, edit=None) -> Path:
    items = json.loads(key_path(sheet).read_text())["items"]
    rows = _rows(sheet)
    for r in rows:
        r["fluency"], r["informativeness"] = map(str, scores(items[r["item_id"]], r["dialogue"]))
        if edit:
            edit(r)
    fields = [c for c in rows[0] if c != drop]
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return out


@pytest.fixture
def sheet(runs, tmp_path) -> Path:
    export_sheet(runs, tmp_path / "sheet.csv", n=3, seed=1)
    return tmp_path / "sheet.csv"


def test_import_means_and_kappa(sheet, tmp_path):
    a = _fill(sheet, tmp_path / "a.csv", SCORES["A"])
    b = _fill(sheet, tmp_path / "b.csv", SCORES["B"])
    result = import_scores([a, b], key_path(sheet))
    s = result["systems"]
    assert result["annotators"] == 2 and list(s) == ["kgsf", "kgsf_nokg", "transformer"]
    assert s["kgsf"] == {"fluency": 2.0, "informativeness": 1.5, "ratings": 6}
    assert s["kgsf_nokg"] == {"fluency": 1.0, "informativeness": 1.0, "ratings": 6}
    assert s["transformer"]["fluency"] == pytest.approx(1 / 6)
    assert s["transformer"]["informativeness"] == pytest.approx(0.5)
    assert result["agreement"]["fluency"] == pytest.approx(89 / 107)
    assert result["agreement"]["informativeness"] == pytest.approx(-1 / 3)
    report = format_report(result)
    assert "| kgsf | 2.000 | 1.500 | 6 |" in report and "0.832" in report and "-0.333" in report


def test_import_single_annotator_has_no_agreement(sheet, tmp_path):
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(str(m)), level="WARNING")
    try:
        result = import_scores([_fill(sheet, tmp_path / "a.csv", SCORES["A"])], key_path(sheet))
    finally:
        logger.remove(sink)
    assert result["agreement"] == {"fluency": None, "informativeness": None}
    assert result["systems"]["transformer"] == {"fluency": 0.0, "informativeness": 1.0, "ratings": 3}
    assert any("two sheets" in w for w in warnings)
    assert "n/a" in format_report(result)


def test_fleiss_kappa_wikipedia_example():
    # the classic table (10 items, 14 raters, 5 categories): P_bar = 0.378, P_e = 0.213, kappa = 0.210
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa([[0, 3, 0], [0, 3, 0]]) == 1.0          # degenerate: P_e = 1, perfect agreement
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [3, 0]])


def _line_of(path: Path, item_id: str) -> int:
    """The physical line where a row starts (rows span lines: the context holds newlines)."""
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if line.startswith(item_id + ","))


@pytest.mark.parametrize("bad", ["3", "1.5", "good", ""])
def test_import_bad_score_names_file_line_column_value(sheet, tmp_path, bad):
    target = "d002-S3"
    def edit(r):
        if r["item_id"] == target:
            r["informativeness"] = bad
    path = _fill(sheet, tmp_path / "annot_bad.csv", SCORES["A"], edit=edit)
    with pytest.raises(DataError) as err:
        import_scores([_fill(sheet, tmp_path / "ok.csv", SCORES["B"]), path], key_path(sheet))
    line = _line_of(path, target)
    assert line > 3                      # the multi-line context pushes rows past their row number
    msg = err.value.message
    assert f"annot_bad.csv, line {line}:" in msg and "informativeness" in msg
    assert ("empty" in msg) if bad == "" else (repr(bad) in msg)
    assert "0 to 2" in err.value.hint


def test_import_scale_parameter_and_spreadsheet_floats(sheet, tmp_path):
    path = _fill(sheet, tmp_path / "a.csv", lambda s, d: ("4.0", "3"))
    result = import_scores([path], key_path(sheet), scale=(1, 5))
    assert result["systems"]["kgsf"]["fluency"] == 4.0
    with pytest.raises(DataError, match="not an integer in 0..2"):
        import_scores([path], key_path(sheet))
    with pytest.raises(ConfigError):
        import_scores([path], key_path(sheet), scale=(2, 0))


def test_import_missing_column_and_unknown_item(sheet, tmp_path):
    path = _fill(sheet, tmp_path / "nocol.csv", SCORES["A"], drop="informativeness")
    with pytest.raises(DataError) as err:
        import_scores([path], key_path(sheet))
    assert "nocol.csv" in err.value.message and "missing column 'informativeness'" in err.value.message
    def rename(r):
        if r["item_id"] == "d001-S1":
            r["item_id"] = "d999-S1"
    path = _fill(sheet, tmp_path / "unknown.csv", SCORES["A"], edit=rename)
    with pytest.raises(DataError, match=r"unknown\.csv, line 2: unknown item_id 'd999-S1'"):
        import_scores([path], key_path(sheet))
