"""Stop a KGSF run in the middle of an epoch, twice, resume it, and get exactly the uninterrupted result.

SIGTERM: the run writes a checkpoint after the current step, says `interrupted` in run.json, exits
with 128+15, and resumes from that step. SIGKILL: the process dies at once; the run is shown as
stale, and resumes from the last checkpoint, written within the epoch (train.checkpoint_minutes).
Small scale: a ReDial-format data directory holding the first conversations of each real split and
the real DBpedia/ConceptNet files; a narrow KGSF so an epoch takes a few seconds.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import small_redial
from crsbench.trainer import checkpoint

pytestmark = pytest.mark.slow

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


def _signal_in_rec_epoch(proc, out, sig, epochs_done):
    """Send `sig` once a checkpoint exists inside the recommendation epoch after `epochs_done`
    finished ones (run.json's heartbeat follows every checkpoint and is cheap to poll)."""
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        for meta_file in out.glob("redial/kgsf/*/run.json"):
            try:
                progress = json.loads(meta_file.read_text()).get("progress") or {}
            except ValueError:
                continue
            if progress.get("stage") == "rec" and progress.get("epoch") == epochs_done and progress.get("batch"):
                proc.send_signal(sig)
                return meta_file.parent
        time.sleep(0.05)
    raise AssertionError("the run ended before it could be signalled")


def _listing(env, out):
    proc = subprocess.run([sys.executable, "-m", "crsbench", "runs", "--output-dir", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_sigterm_then_sigkill_mid_epoch_then_resume_matches_uninterrupted(real_data_dir, tmp_path):
    """One run, stopped twice inside recommendation epochs and resumed twice, ends as a straight run."""
    # 30 training conversations (half the default): ~30 steps an epoch still leave room to stop inside one
    data = small_redial(real_data_dir, tmp_path, sizes=(30, 15, 15))
    env = {**os.environ, "CRSBENCH_CACHE": str(tmp_path / "cache")}
    common = ["run", "--model", "kgsf", "--dataset", "redial", "--data-dir", str(data), "--seed", "7"]
    common += [a for s in SETTINGS for a in ("--set", s)]
    straight_out = tmp_path / "straight"
    proc = _start(common + ["--set", f"run.output_dir={straight_out}"], env)
    log, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, log
    straight = _run_dir(straight_out)
    recorded = json.loads((straight / "run.json").read_text())["environment"]
    assert recorded["torch"] == torch.__version__
    # run.deterministic: ordered kernels exactly when several threads could reorder the sums
    assert recorded["deterministic_kernels"] is (recorded["threads"] > 1)
    shown = subprocess.run([sys.executable, "-m", "crsbench", "show", str(straight)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    content = json.loads((straight / "run.json").read_text())["data"]["content"]
    assert f"preprocessed content {content[:10]}" in shown.stdout and f"torch {torch.__version__}" in shown.stdout
    assert "- model.dim: 16 (default 128)" in shown.stdout and "- stages.rec.epochs: 3" in shown.stdout

    # the interrupted run also checkpoints every 0.6 s within an epoch (checkpoints draw no random
    # numbers, so the straight run, which writes none, is the reference)
    out = tmp_path / "interrupted"
    proc = _start(common + ["--set", f"run.output_dir={out}", "--set", "train.checkpoint_minutes=0.01"], env)
    run = _signal_in_rec_epoch(proc, out, signal.SIGTERM, epochs_done=1)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, log
    assert "--resume" in log and "Traceback" not in log
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert checkpoint.load(run / "checkpoints" / "last.pt")["progress"]["in_epoch"]["epoch"] == 1
    assert " interrupted " in _listing(env, out)

    proc = _start(["run", "--resume", str(run)], env)
    _signal_in_rec_epoch(proc, out, signal.SIGKILL, epochs_done=2)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    listing = _listing(env, out)
    assert " stale " in listing and "stage 2/2 rec, 2/3 epochs done" in listing   # the process is gone

    # as if an older crsbench had saved the run: settings added since are filled with their defaults
    import yaml
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["data"]["kg_edges"], saved["train"]["carry_optimizer"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    proc = _start(["run", "--resume", str(run)], env)
    log, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, log
    assert "resuming in epoch 3 after" in log
    assert "saved by an older crsbench" in log and "data.kg_edges" in log
    assert json.loads((run / "metrics.json").read_text())["metrics"] == \
        json.loads((straight / "metrics.json").read_text())["metrics"]
    a = torch.load(straight / "model.pt", weights_only=True)
    b = torch.load(run / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert " finished " in _listing(env, out)
    # every run file is created with the user's umask, not mkstemp's 0600
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("run.json", "config.yaml", "metrics.json", "model.pt", "checkpoints/last.pt"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
