"""scripts/device_session.sh, the one-call GPU session, checked where CI runs: on the CPU
(DEVICE_SMOKE=1 skips the CUDA tests and times the step on 4 samples; the sweep is one popularity cell). It installs the carried wheels into
its own site folder, unpacks the carried data and preprocessing cache, runs the step benchmark and
the sweep, and archives the finished runs' records without their weights: the parts a GPU session
has no time to debug."""
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_the_device_session_runs_end_to_end_on_a_cpu(tmp_path, real_data_dir, real_cache_dir, redial):
    repo = tmp_path / "repo"              # a copy: the session writes runs/ into the tree it runs in
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(".venv", "runs", ".device", "__pycache__",
                                                              "*.egg-info", "build", "docs", ".pytest_cache"))
    carry = repo / ".device"
    (carry / "whl").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(carry / "whl"), str(repo)], check=True, capture_output=True)
    with tarfile.open(carry / "data.tar.gz", "w:gz") as tar:
        tar.add(real_data_dir / "redial", arcname="redial")
    with tarfile.open(carry / "cache.tar", "w") as tar:      # the entry `redial` built for this session
        for entry in real_cache_dir.iterdir():
            tar.add(entry, arcname=entry.name)
    # a sweep on the default data settings, whose preprocessing the carried cache holds
    (repo / "smoke.yaml").write_text("name: smoke\ndatasets: [redial]\nseeds: [1]\nrows:\n  - {model: popularity, tag: smoke}\n")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "DEVICE_SMOKE": "1", "PYTHON": sys.executable,
           "DEVICE_SITE": str(tmp_path / "site"), "DEVICE_DATA": str(tmp_path / "data"),
           "DEVICE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", str(repo / "scripts" / "device_session.sh"), "900", "smoke.yaml"], env=env,
                          capture_output=True, text=True, timeout=1200)
    log = (out / "session.log").read_text()
    assert proc.returncode == 0, log + proc.stderr[-3000:]
    assert "installed; torch" in log
    assert "CUDA tests" not in log                                    # smoke: no CUDA
    assert "step benchmark: rc 0 (ratio" in log, (out / "step.log").read_text()[-3000:]
    assert "sweep: rc 0" in log, (out / "sweep.log").read_text()[-3000:]
    # the carried cache was used: no entry was added by preprocessing again
    assert ({p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")}
            == {p.name for p in real_cache_dir.iterdir() if not p.name.endswith(".lock")})
    assert "archived the runs finished since" in log and ": 1 run(s)" in log
    with tarfile.open(out / "records.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("run.json") and "popularity_smoke" in n for n in names), names
    assert not any(n.endswith(".pt") for n in names), names           # no weights travel back
