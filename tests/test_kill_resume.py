"""SIGKILL a KGSF run in the middle of an epoch, resume it, and get exactly the uninterrupted result.

Small scale: a ReDial-format data directory holding the first conversations of each real split and
the real DBpedia/ConceptNet files; a narrow KGSF so an epoch takes a few seconds.
"""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from conftest import small_redial
from crsbench.trainer import checkpoint

SETTINGS = ["model.dim=16", "train.batch_size=4", "stages.pretrain.epochs=1", "stages.rec.epochs=3",
            "stages.rec.early_stop_metric=recall@1+recall@50", "stages.rec.early_stop_patience=5",
            "eval.splits=[test]", "eval.views=[all,cold_start]",
            "run.tasks=[rec]"]    # the recommender stages; resuming across the conversation stage is in test_trainer


def _start(args, env):
    return subprocess.Popen([sys.executable, "-m", "crsbench", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run_dir(out):
    (run,) = list((out / "redial" / "kgsf").iterdir())
    return run


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(real_data_dir, tmp_path):
    data = small_redial(real_data_dir, tmp_path)
    env = {**os.environ, "CRSBENCH_CACHE": str(tmp_path / "cache")}
    common = ["run", "--model", "kgsf", "--dataset", "redial", "--data-dir", str(data), "--seed", "7"]
    sets = [a for s in SETTINGS for a in ("--set", s)]

    straight_out = tmp_path / "straight"
    proc = _start(common + sets + ["--set", f"run.output_dir={straight_out}"], env)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log

    killed_out = tmp_path / "killed"
    proc = _start(common + sets + ["--set", f"run.output_dir={killed_out}"], env)
    deadline = time.time() + 600
    killed_mid_epoch = False
    while time.time() < deadline and proc.poll() is None:
        last = killed_out / "redial" / "kgsf"
        ckpts = list(last.glob("*/checkpoints/last.pt")) if last.exists() else []
        if ckpts:
            try:
                state = checkpoint.load(ckpts[0])
            except (RuntimeError, EOFError, OSError):
                state = None                      # being replaced right now: look again
            if state and state["stage_index"] == 1 and state["progress"]["epoch"] == 1:
                time.sleep(0.5)                  # into rec epoch 2
                proc.send_signal(signal.SIGKILL)
                killed_mid_epoch = True
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_mid_epoch and proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    run = _run_dir(killed_out)
    assert not (run / "metrics.json").exists()

    proc = _start(["run", "--resume", str(run)], env)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log
    straight = json.loads((_run_dir(straight_out) / "metrics.json").read_text())["metrics"]
    resumed = json.loads((run / "metrics.json").read_text())["metrics"]
    assert resumed == straight
    a = torch.load(_run_dir(straight_out) / "model.pt", weights_only=True)
    b = torch.load(run / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
