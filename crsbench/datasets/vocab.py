"""Vocabulary and word2vec initial embeddings, both built on the train split only."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
from loguru import logger

from crsbench.datasets.types import Vocabulary

# gensim's word2vec updates are BLAS dot/axpy calls, and OpenBLAS picks its kernel by CPU (or by
# $OPENBLAS_CORETYPE): the same data and seed gave other vectors with the AVX-512 kernel than with the
# AVX2 one (sha256 80028f9c650d vs bb7b36ec0331 on ReDial v2), so the conversation models started from
# other embeddings on another machine. word2vec therefore runs on one pinned kernel: Haswell's AVX2
# kernel, which every x86-64 CPU with AVX2 and FMA (2013 on) runs to the same bits.
WORD2VEC_BLAS_CORE = "Haswell"
CORE_ENV = "OPENBLAS_CORETYPE"


def build_vocabulary(token_lists: Iterable[list[str]], min_count: int) -> Vocabulary:
    """Special tokens first, then words seen >= min_count times, most frequent first (ties A-Z)."""
    counts = Counter(t for tokens in token_lists for t in tokens)
    words = sorted((w for w, c in counts.items() if c >= min_count and w not in Vocabulary.SPECIALS),
                   key=lambda w: (-counts[w], w))
    return Vocabulary(list(Vocabulary.SPECIALS) + words)


def _pinnable() -> bool:
    """Whether this CPU runs the pinned kernel (x86-64 with AVX2 and FMA)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:                                   # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return bool(features.get("AVX2") and features.get("FMA3"))


def train_word2vec(token_lists: list[list[str]], vocab: Vocabulary, dim: int, epochs: int,
                   window: int, seed: int) -> np.ndarray:
    """word2vec (gensim, CBOW as in the original KGSF code) vectors for the vocabulary, float32
    [len(vocab), dim], computed on the pinned BLAS kernel (WORD2VEC_BLAS_CORE): in this process when
    it started with that kernel, else in a child process started with it. Words gensim did not learn
    get small seeded random vectors; padding is zero."""
    args = (token_lists, vocab, dim, epochs, window, seed)
    if not _pinnable():
        logger.warning(f"word2vec: this CPU ({platform.machine()}) lacks the pinned BLAS kernel "
                       f"({WORD2VEC_BLAS_CORE}, AVX2 + FMA): its embeddings may differ from other machines' "
                       "in the last bits, and the conversation models' results with them")
        return _word2vec(*args)
    if os.environ.get(CORE_ENV, "").lower() == WORD2VEC_BLAS_CORE.lower():
        return _word2vec(*args)
    return _word2vec_in_child(*args)


def _word2vec_in_child(token_lists: list[list[str]], vocab: Vocabulary, dim: int, epochs: int,
                       window: int, seed: int) -> np.ndarray:
    """`_word2vec` in a fresh interpreter started with the pinned kernel (OpenBLAS reads the variable
    once, when it loads). The data goes through JSON and the vectors come back as .npy (no pickle)."""
    with tempfile.TemporaryDirectory(prefix="crsbench-word2vec-") as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "vectors.npy"
        job.write_text(json.dumps({"tokens": token_lists, "vocab": vocab.tokens, "dim": dim, "epochs": epochs,
                                   "window": window, "seed": seed}))
        env = {**os.environ, CORE_ENV: WORD2VEC_BLAS_CORE}
        proc = subprocess.run([sys.executable, "-m", "crsbench.datasets.vocab", str(job), str(out)], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"word2vec in a child process (OpenBLAS kernel {WORD2VEC_BLAS_CORE}) failed:\n"
                               f"{proc.stderr[-2000:]}")
        logger.info(f"word2vec trained on the pinned OpenBLAS kernel {WORD2VEC_BLAS_CORE} (child process)")
        return np.load(out, allow_pickle=False)


def _word2vec(token_lists: list[list[str]], vocab: Vocabulary, dim: int, epochs: int,
              window: int, seed: int) -> np.ndarray:
    from gensim.models import Word2Vec

    # one worker: with two, gensim's threads update the shared vectors in an order the OS decides, so
    # every build gave other embeddings (and the conversation models and TextCNN other results) under
    # the same data fingerprint; one worker is deterministic, whatever PYTHONHASHSEED (tested)
    model = Word2Vec(sentences=token_lists, vector_size=dim, window=window, min_count=1,
                     workers=1, epochs=epochs, seed=seed)
    rng = np.random.default_rng(seed)
    out = rng.normal(scale=0.1, size=(len(vocab), dim)).astype(np.float32)
    keys = model.wv.key_to_index
    for i, word in enumerate(vocab.tokens):
        if word in keys:
            out[i] = model.wv[word]
    out[vocab.index[Vocabulary.PAD]] = 0.0
    return out


WORD2VEC_SEED = 0            # the dataset must not depend on a run's seed


def vocabulary_and_embeddings(train_convs: list, settings: dict) -> tuple[Vocabulary, np.ndarray]:
    """Vocabulary and word2vec vectors from the train split's turns (`data:` settings)."""
    train_tokens = [turn.tokens for conv in train_convs for turn in conv.turns]
    vocab = build_vocabulary(train_tokens, settings["vocab_min_count"])
    embeddings = train_word2vec(train_tokens, vocab, settings["word2vec_dim"], settings["word2vec_epochs"],
                                settings["word2vec_window"], WORD2VEC_SEED)
    return vocab, embeddings


if __name__ == "__main__":            # the child of `_word2vec_in_child`: JOB.json -> VECTORS.npy
    spec = json.loads(Path(sys.argv[1]).read_text())
    vectors = _word2vec(spec["tokens"], Vocabulary(spec["vocab"]), spec["dim"], spec["epochs"], spec["window"],
                        spec["seed"])
    np.save(sys.argv[2], vectors, allow_pickle=False)
