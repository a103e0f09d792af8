"""`crsbench history`: a run's per-epoch record as a Markdown table, each column from the part of
history.jsonl it names (the whole validation split, the generation subset, the test curve)."""
import json

import pytest

from crsbench.cli import main
from crsbench.errors import ConfigError
from crsbench.results.history import history_table
from crsbench.run_dir import RunDir


def _run_with_history(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    lines = [{"stage": "rec", "epoch": 1, "train_loss": 7.0, "valid": {"all/recall@50": 0.3},
              "test_curve": {"all/recall@50": 0.25}, "seconds": 10.0}]
    lines += [{"stage": "conv", "epoch": e, "train_loss": 5.0 - e, "valid": {"gen/ppl": 100.0 - e},
               "generation": {"gen/ppl": 90.0 - e, "gen/dist@2": 0.01 * e, "gen/context_gain": 1.0 + e / 100},
               "seconds": 60.0} for e in (1, 2)]
    run.history.write_text("".join(json.dumps(l) + "\n" for l in lines))
    return run


def test_default_columns_say_where_each_value_comes_from(tmp_path):
    run = _run_with_history(tmp_path)
    table = history_table(run.path, stage="conv").splitlines()
    assert table[0] == ("| stage | epoch | train_loss | valid:gen/ppl | generation:gen/context_gain | "
                        "generation:gen/dist@2 | seconds |")
    assert table[2] == "| conv | 1 | 4 | 99 | 1.01 | 0.01 | 60.0 |"
    assert table[3] == "| conv | 2 | 3 | 98 | 1.02 | 0.02 | 60.0 |"
    assert len(table) == 4                                  # the rec epoch is not in stage conv
    full = history_table(run.path).splitlines()
    assert "test_curve:all/recall@50" in full[0] and full[2].startswith("| rec | 1 | 7 |")
    subset = history_table(run.path, "conv", ["generation:gen/ppl", "gen/ppl"]).splitlines()
    assert subset[2] == "| conv | 1 | 89 | 99 |"          # a bare metric: the validation split first


def test_bad_columns_and_stages_name_the_run_and_the_fix(tmp_path, capsys):
    run = _run_with_history(tmp_path)
    with pytest.raises(ConfigError, match="'gen/dist@3' is in no epoch"):
        history_table(run.path, "conv", ["gen/dist@3"])
    with pytest.raises(ConfigError, match="no epochs of stage 'pretrain'"):
        history_table(run.path, "pretrain")
    assert main(["history", str(run.path), "--stage", "conv", "--columns", "train_loss"]) == 0
    assert "| conv | 2 | 3 |" in capsys.readouterr().out


def test_a_run_from_before_history_jsonl_reads_its_epochs_from_metrics_json(tmp_path):
    run = RunDir(tmp_path / "old")
    run.path.mkdir()
    epochs = [{"epoch": e, "train_loss": 8.0 - e, "valid": {"all/recall@50": 0.1 * e}, "seconds": 90.0} for e in (1, 2)]
    run.metrics_file.write_text(json.dumps({"metrics": {}, "training": {"stages": [
        {"stage": "rec", "best": 0.2, "best_epoch": 2, "epochs": 2, "history": epochs}]}}))
    table = history_table(run.path).splitlines()
    assert table[0] == "| stage | epoch | train_loss | valid:all/recall@50 | seconds |"
    assert table[2:] == ["| rec | 1 | 7 | 0.1 | 90.0 |", "| rec | 2 | 6 | 0.2 | 90.0 |"]
