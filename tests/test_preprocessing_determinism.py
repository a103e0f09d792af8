"""Preprocessing the real ReDial data twice, in processes with different string hashing, gives the
same result to the last bit: conversations, graphs, vocabulary and word2vec embeddings (a content
digest over all of them). With two gensim workers the embeddings differed on every build."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

BUILD = """
from crsbench.config.loader import read_yaml, DEFAULTS_FILE
from crsbench.datasets.loader import load_dataset
print("CONTENT", load_dataset("redial", read_yaml(DEFAULTS_FILE)["data"]).version.content)
"""


def _content(real_data_dir, cache, hash_seed: str) -> str:
    env = {**os.environ, "CRSBENCH_DATA": str(real_data_dir), "CRSBENCH_CACHE": str(cache),
           "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run([sys.executable, "-c", BUILD], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("CONTENT ")]
    return line.split()[1]


def test_two_builds_of_redial_are_identical(real_data_dir, tmp_path):
    first = _content(real_data_dir, tmp_path / "a", "1")
    second = _content(real_data_dir, tmp_path / "b", "2")         # a fresh build, not the first's cache
    assert len(first) == 64 and first == second
    assert _content(real_data_dir, tmp_path / "a", "3") == first   # and its cached copy says the same
