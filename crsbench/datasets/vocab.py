"""Vocabulary and word2vec initial embeddings, both built on the train split only."""
from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np

from crsbench.datasets.types import Vocabulary


def build_vocabulary(token_lists: Iterable[list[str]], min_count: int) -> Vocabulary:
    """Special tokens first, then words seen >= min_count times, most frequent first (ties A-Z)."""
    counts = Counter(t for tokens in token_lists for t in tokens)
    words = sorted((w for w, c in counts.items() if c >= min_count and w not in Vocabulary.SPECIALS),
                   key=lambda w: (-counts[w], w))
    return Vocabulary(list(Vocabulary.SPECIALS) + words)


def train_word2vec(token_lists: list[list[str]], vocab: Vocabulary, dim: int, epochs: int,
                   window: int, seed: int) -> np.ndarray:
    """word2vec (gensim, CBOW as in the original KGSF code) vectors for the vocabulary, float32
    [len(vocab), dim]. Words gensim did not learn get small seeded random vectors; padding is zero."""
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
