"""Preprocessing the real ReDial data twice, in processes with different string hashing, gives the
same result to the last bit: conversations, graphs, vocabulary and word2vec embeddings (a content
digest over all of them). With two gensim workers the embeddings differed on every build. The first
build is the test session's own (the `redial` fixture, in this process); the second runs in a
subprocess under another hash seed and another BLAS kernel, into a cache of its own."""
import os
import subprocess
import sys

import pytest

from crsbench.datasets.vocab import _pinnable

pytestmark = pytest.mark.slow

BUILD = """
from crsbench.config.loader import resolve_config
from crsbench.datasets.loader import load_dataset
from crsbench.registry import get_dataset

class NoModel:
    config_file = None

print("CONTENT", load_dataset("redial", resolve_config(NoModel, get_dataset("redial"))["data"]).version.content)
"""


def _content(real_data_dir, cache, hash_seed: str, blas_core: str | None = None) -> str:
    env = {**os.environ, "CRSBENCH_DATA": str(real_data_dir), "CRSBENCH_CACHE": str(cache),
           "PYTHONHASHSEED": hash_seed, **({"OPENBLAS_CORETYPE": blas_core} if blas_core else {})}
    proc = subprocess.run([sys.executable, "-c", BUILD], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("CONTENT ")]
    return line.split()[1]


def test_two_builds_of_redial_are_identical(real_data_dir, tmp_path, redial):
    """Where the pinned kernel runs, the second build also starts on another OpenBLAS kernel (as on
    another CPU, or under another $OPENBLAS_CORETYPE): word2vec runs on the pinned one, where before the
    AVX-512 and AVX2 kernels gave ReDial v2 two sets of embeddings."""
    first = redial.version.content                              # this process's build (conftest)
    other_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    other_kernel = "Sandybridge" if _pinnable() else None
    second = _content(real_data_dir, tmp_path / "b", other_seed, other_kernel)   # a fresh build
    assert len(first) == 64 and first == second
    assert _content(real_data_dir, tmp_path / "b", "3") == first   # and its cached copy says the same
