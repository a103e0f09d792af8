"""word2vec's vectors do not depend on the machine's BLAS kernel: gensim's updates are BLAS dot/axpy
calls whose float sums OpenBLAS orders by kernel, so unpinned the same corpus and seed give other
vectors under another kernel (checked first, so the test can fail); `train_word2vec` pins one."""
import hashlib
import os
import subprocess
import sys

import pytest

from crsbench.datasets.vocab import _pinnable

SCRIPT = """
import hashlib, sys
import numpy as np
from crsbench.datasets.vocab import _word2vec, build_vocabulary, train_word2vec
rng = np.random.default_rng(0)
words = [f"w{i}" for i in range(400)]
sentences = [[words[j] for j in rng.zipf(1.3, size=12) % 400] for _ in range(3000)]
vocab = build_vocabulary(sentences, 1)
train = {"pinned": train_word2vec, "unpinned": _word2vec}[sys.argv[1]]
vectors = train(sentences, vocab, 64, 2, 5, 0)
print("SHA", hashlib.sha256(vectors.tobytes()).hexdigest())
"""


def _digest(kind: str, core: str) -> str:
    env = {**os.environ, "OPENBLAS_CORETYPE": core, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, kind], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("SHA ")]
    return line.split()[1]


@pytest.mark.skipif(not _pinnable(), reason="the pinned kernel needs an x86-64 CPU with AVX2 and FMA")
def test_word2vec_gives_the_same_vectors_whatever_kernel_the_process_started_with():
    assert _digest("unpinned", "Sandybridge") != _digest("unpinned", "Haswell")    # the defect is real here
    assert _digest("pinned", "Sandybridge") == _digest("pinned", "Haswell") == _digest("pinned", "Prescott")
