"""`crsbench show`: a run's provenance, the settings it changed, its training and headline metrics."""
import json

from crsbench.cli import main
from crsbench.config.loader import save_config
from crsbench.run_dir import RunDir
from crsbench.runner import prepare_config
from crsbench.results.show import NOT_A_SETTING, changed_settings


def test_changed_settings_name_the_default_a_stage_inherits_and_skip_places():
    defaults = {"run": {"seed": 1, "tasks": None}, "train": {"lr": 0.001, "restore_best": True},
                "stages": {"conv": {"epochs": 6}}, "data": {"dir": None}}
    config = {"run": {"seed": 7, "tasks": ["conv"]}, "train": {"lr": 0.001, "restore_best": True},
              "stages": {"conv": {"epochs": 20, "restore_best": False}}, "data": {"dir": "/x", "old": 1}}
    assert changed_settings(config, defaults) == [
        ("run.tasks", None, ["conv"]), ("stages.conv.epochs", 6, 20),
        ("stages.conv.restore_best", True, False), ("data.old", NOT_A_SETTING, 1)]


def test_show_prints_a_runs_provenance_changes_training_and_metrics(tmp_path, capsys):
    config, _ = prepare_config("kgsf", "redial", overrides=["stages.conv.epochs=20", "model.word_side=release"],
                               seed=3)
    run = RunDir.create(tmp_path, "redial", "kgsf", "x", 3)
    save_config(config, run.config_file)
    run.write_meta({"run_id": run.run_id(), "model": "kgsf", "dataset": "redial", "tag": "x", "seed": 3,
                    "protocol": "crsbench", "status": "finished", "started": "2026-12-01T00:00:00+00:00",
                    "code_version": "0.1.0+gabc",
                    "data": {"files": "f" * 64, "fingerprint": "p" * 64, "content": "c" * 64,
                             "train_conversations": 3379},
                    "environment": {"torch": "2.13", "python": "3.12", "device": "cpu", "device_name": "Xeon",
                                    "threads": 1},
                    "resume_environments": [{"at": "2026-12-02T00:00:00+00:00", "torch": "2.13", "python": "3.12",
                                             "device": "cpu", "device_name": "Xeon", "threads": 2}]})
    run.metrics_file.write_text(json.dumps({
        "metrics": {"test/all/recall@50": 0.3392, "test/gen/dist@2": 0.1},
        "training": {"stages": [{"stage": "rec", "epochs": 7, "best_epoch": 4, "best": 0.36, "seconds": 600},
                                {"stage": "conv", "epochs": 20, "best_epoch": None, "best": None, "seconds": 60}]}}))
    assert main(["show", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "seed 3, protocol crsbench, status finished" in out
    assert "files ffffffffff, fingerprint pppppppppp, preprocessed content cccccccccc, 3379 training" in out
    assert "torch 2.13, python 3.12, cpu (Xeon), 1 thread(s)" in out and "2 thread(s)" in out
    assert "- stages.conv.epochs: 20 (default 6)" in out and "- model.word_side: 'release' (default 'crsbench')" in out
    assert "run.seed" not in out
    assert "- rec: 7 epoch(s), best epoch 4 (0.3600), 10.0 min" in out and "- conv: 20 epoch(s), last epoch kept" in out
    assert "- all/recall@50: 0.3392" in out and "- gen/dist@2: 0.1000" in out
