"""A non-editable install ships every module and YAML file of crsbench and baselines.

`pip install -e .` hides a missing package (the source tree is on the path); a wheel does not: a
folder without __init__.py is skipped by find_packages, and its modules are missing after
`pip install .` (this happened to crsbench/datasets, found on the GPU machine)."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_source_file(tmp_path):
    source = tmp_path / "src"      # a clean copy: a stale build/ folder must not fill the gaps
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", ".git", ".venv", "runs", ".*cache*", ".devdata", ".whl"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("crsbench-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(REPO).as_posix() for top in ("crsbench", "baselines")
                for pattern in ("*.py", "*.yaml") for p in (REPO / top).rglob(pattern)
                if "__pycache__" not in p.parts}
    assert "crsbench/datasets/loader.py" in expected
    assert expected - shipped == set(), "add __init__.py to these folders or package_data to setup.py"
