"""Runs a since-fixed defect could have changed are recognised from their own files: whether the
code had the fix (run.json's `fixes`, git, or the start time) and whether the run was exposed."""
from pathlib import Path

import pytest

from crsbench.results.fixed_defects import FIXED_DEFECTS, code_had_fix, defects_of, fixes_in_this_code
from crsbench.run_dir import RunDir

REPO = Path(__file__).resolve().parents[1]
INIT_FROM = next(d for d in FIXED_DEFECTS if d.name == "init_from-tied-embeddings")
BEFORE, AFTER = "2026-12-01T20:52:56+00:00", "2026-12-01T23:59:05+00:00"


def _source(tmp_path: Path, build: str, tasks: list[str]) -> Path:
    run = RunDir(tmp_path / "redial" / "kgsf" / f"source-{build}-{'-'.join(tasks)}")
    run.path.mkdir(parents=True)
    run.write_meta({"model": "kgsf", "dataset": "redial", "status": "finished", "data": {"content": build}})
    run.config_file.write_text(f"run:\n  tasks: [{', '.join(tasks)}]\n")
    return run.path


def _conv_run(source: Path | None, build: str = "b1", started: str = BEFORE, **meta) -> tuple[dict, dict]:
    config = {"run": {"tasks": ["conv"], **({"init_from": str(source)} if source else {})}}
    return {"started": started, "data": {"content": build}, **meta}, config


def test_a_conversation_cell_from_a_source_on_another_build_before_the_fix_is_exposed(tmp_path):
    meta, config = _conv_run(_source(tmp_path, "b0", ["rec"]))
    assert defects_of(meta, config) == [INIT_FROM]


def test_a_source_that_trained_the_word_vectors_exposes_even_on_the_same_build(tmp_path):
    meta, config = _conv_run(_source(tmp_path, "b1", ["rec", "conv"]))
    assert defects_of(meta, config) == [INIT_FROM]


def test_a_rec_only_source_on_the_same_build_gave_the_same_vectors(tmp_path):
    meta, config = _conv_run(_source(tmp_path, "b1", ["rec"]))
    assert defects_of(meta, config) == []


def test_runs_without_init_from_or_without_a_conversation_stage_are_not_exposed(tmp_path):
    source = _source(tmp_path, "b0", ["rec"])
    assert defects_of(*_conv_run(None)) == []
    meta, config = _conv_run(source)
    config["run"]["tasks"] = ["rec"]
    assert defects_of(meta, config) == []


def test_a_vanished_source_counts_as_exposed(tmp_path):
    assert defects_of(*_conv_run(tmp_path / "gone")) == [INIT_FROM]


def test_the_recorded_fixes_decide_first_then_the_start_time(tmp_path):
    source = _source(tmp_path, "b0", ["rec"])
    assert defects_of(*_conv_run(source, started=BEFORE, fixes=fixes_in_this_code())) == []
    assert defects_of(*_conv_run(source, started=AFTER, fixes=[])) == [INIT_FROM]
    assert defects_of(*_conv_run(source, started=AFTER)) == []               # no record, no commit: the time
    assert not code_had_fix({"code_version": "0.1.0"}, INIT_FROM)             # nothing known: not assumed


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the source checkout's git history")
def test_the_commit_in_code_version_decides_over_the_start_time(tmp_path):
    """A run started after the fix's time on code without it (a worktree behind main) is exposed."""
    parent = INIT_FROM.commit + "~1"
    import subprocess
    before = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", parent], capture_output=True,
                            text=True, check=True).stdout.strip()
    source = _source(tmp_path, "b0", ["rec"])
    assert defects_of(*_conv_run(source, started=AFTER, code_version=f"0.1.0+g{before}")) == [INIT_FROM]
    assert defects_of(*_conv_run(source, started=BEFORE,
                                 code_version=f"0.1.0+g{INIT_FROM.commit[:12]}.dirty")) == []


def test_every_fix_names_a_commit_and_its_time():
    from datetime import datetime
    for defect in FIXED_DEFECTS:
        assert len(defect.commit) == 40 and datetime.fromisoformat(defect.committed).tzinfo is not None
    assert len({d.name for d in FIXED_DEFECTS}) == len(FIXED_DEFECTS)


def test_compare_and_show_name_an_exposed_run(tmp_path):
    """`compare` notes the row that holds an exposed run; `crsbench show` marks the run."""
    from crsbench.config.loader import save_config
    from crsbench.results.compare import Cell, Row, _before_fixes
    meta, config = _conv_run(_source(tmp_path, "b0", ["rec"]))
    run = RunDir(tmp_path / "redial" / "kgsf" / "conv-seed1")
    run.path.mkdir(parents=True)
    run.write_meta({**meta, "model": "kgsf", "dataset": "redial", "status": "finished"})
    save_config(config, run.config_file)
    sound = RunDir(tmp_path / "redial" / "kgsf" / "conv-seed2")
    sound.path.mkdir(parents=True)
    sound.write_meta({**meta, "fixes": fixes_in_this_code()})
    save_config(config, sound.config_file)
    row = Row("kgsf", "", "crsbench", "fp", 2, {"gen/dist@2": Cell([0.1, 0.2], [str(run.path), str(sound.path)])})
    (note,) = _before_fixes([row])
    assert note.startswith("kgsf: 1 run(s) made before the fix of init_from-tied-embeddings (4a8e7c4")
    assert str(run.path) in note
    assert _before_fixes([Row("kgsf", "", "crsbench", "fp", 1, {"gen/dist@2": Cell([0.2], [str(sound.path)])})]) == []
