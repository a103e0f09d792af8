"""Shared fixtures: a tiny in-code dataset for unit tests, and the real data for integration tests."""
from __future__ import annotations

import os
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from crsbench.datasets.types import (RECOMMENDER, SEEKER, Conversation, DatasetBundle,
                                     KnowledgeGraph, Turn, Vocabulary)

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real data directory; integration tests FAIL (not skip) when it is missing."""
    path = Path(os.environ.get("CRSBENCH_DATA", REPO.parent / "shared" / "data")).resolve()   # symlinks need it absolute
    if not (path / "redial" / "train_data.jsonl").exists():
        pytest.fail(f"real data not found at {path}: set CRSBENCH_DATA to the shared data directory")
    return path


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    return shared_data_dir()


def _turn(role: str, text: str, items=(), entities=(), words=()) -> Turn:
    return Turn(role, text, text.lower().split(), list(items), list(entities), list(words))


def make_tiny_bundle() -> DatasetBundle:
    """Ten entities (0-5 are the candidate items), three relations, a handful of conversations."""
    S, R = SEEKER, RECOMMENDER
    def conv(cid, turns):
        return Conversation(cid, turns)
    train = [
        conv("t1", [_turn(S, "hi i like @100", [0], [7], [1]),
                    _turn(R, "try @101 then", [1], [], [2]),
                    _turn(S, "seen it", [], [], [3]),
                    _turn(R, "@102 or @101", [2, 1], [8], [])]),
        conv("t2", [_turn(S, "any comedy", [], [6], [4]),
                    _turn(R, "@101 is funny", [1], [], [5])]),
        conv("t3", [_turn(S, "i loved @103", [3], [], []),
                    _turn(R, "then @104", [4], [9], [2])]),
    ]
    valid = [conv("v1", [_turn(S, "something scary", [], [6], [3]),
                         _turn(R, "@105", [5], [], [])])]
    test = [
        conv("x1", [_turn(S, "like @100", [0], [], [1]),
                    _turn(R, "@101 and @100", [1, 0], [7], [2])]),
        conv("x2", [_turn(S, "a comedy please", [], [6], [4]),
                    _turn(R, "@101", [1], [], [])]),
    ]
    edges = np.array([[0, 1, 2, 7, 8, 9, 6], [7, 7, 8, 0, 2, 4, 1]], dtype=np.int64)
    types = np.array([0, 0, 1, 0, 1, 2, 2], dtype=np.int64)
    entity_kg = KnowledgeGraph(10, edges, types, ["r0", "r1", "r2"], [f"e{i}" for i in range(10)])
    word_kg = KnowledgeGraph(6, np.array([[1, 2], [2, 1]], dtype=np.int64),
                             np.zeros(2, dtype=np.int64), ["related"], [f"w{i}" for i in range(6)])
    words = list(Vocabulary.SPECIALS) + sorted({t for c in train for tr in c.turns for t in tr.tokens})
    vocab = Vocabulary(words)
    emb = np.random.default_rng(0).normal(size=(len(vocab), 8)).astype(np.float32)
    return DatasetBundle("tiny", {"train": train, "valid": valid, "test": test}, entity_kg, word_kg,
                         items=[0, 1, 2, 3, 4, 5], item_titles={i: f"Movie {i}" for i in range(6)},
                         vocab=vocab, word_embeddings=emb, fingerprint="tiny")


@pytest.fixture
def tiny_bundle() -> DatasetBundle:
    return make_tiny_bundle()


@pytest.fixture(scope="session")
def real_cache_dir(tmp_path_factory) -> Path:
    """One preprocessing cache for the whole test session (the first real-data load builds it)."""
    return tmp_path_factory.mktemp("crsbench_cache")


@pytest.fixture(scope="session")
def redial(real_data_dir, real_cache_dir):
    """The real ReDial data, preprocessed once per test session, with its instances."""
    from crsbench.config.loader import resolve_config
    from crsbench.datasets.loader import load_dataset
    from crsbench.registry import get_dataset

    class NoModel:
        config_file = None
    config = resolve_config(NoModel, get_dataset("redial"), None, [f"data.cache_dir={real_cache_dir}"])
    return load_dataset("redial", config["data"], real_data_dir)


def small_redial(real_data_dir, tmp_path, sizes=(60, 15, 15)):
    """A ReDial data directory with the first conversations of each real split and the real graphs."""
    root = tmp_path / "data" / "redial"
    root.mkdir(parents=True)
    for entry in (real_data_dir / "redial").iterdir():
        if not entry.name.endswith("_data.jsonl"):
            (root / entry.name).symlink_to(entry)
    for split, size in zip(("train", "valid", "test"), sizes):
        with open(real_data_dir / "redial" / f"{split}_data.jsonl") as src:
            (root / f"{split}_data.jsonl").write_text("".join(islice(src, size)))
    return tmp_path / "data"


def model_defaults(model_cls) -> dict:
    """A model's resolved `model:` section (its YAML files, shared ones included), as a run gets it."""
    import copy
    from crsbench.config.loader import resolve_config

    class NoDataset:
        config_file = None
    return copy.deepcopy(resolve_config(model_cls, NoDataset)["model"])


def check_generation(model, batch, num_samples: int, max_length: int = 6) -> None:
    """Greedy and beam-3 decoding give one in-vocabulary response per sample, at most max_length
    long, and the gold responses' NLL is finite (shared by the conversation-model tests)."""
    import torch
    with torch.no_grad(), model.inference():
        greedy = model.generate(batch, max_length, 1)
        beam = model.generate(batch, max_length, 3)
        nll, count = model.response_nll(batch)
    assert len(greedy) == len(beam) == num_samples
    assert all(1 <= len(r) <= max_length for r in greedy + beam)
    assert all(t in model.data.vocab.index for r in greedy + beam for t in r)
    assert torch.isfinite(nll).all() and (count > 0).all()


def check_incremental_decoding(model, batch) -> None:
    """Decoding the gold response one token at a time (decode_start, then decode_step per position)
    gives the log-probabilities of teacher forcing, which sum to 1 per position (shared by the
    conversation-model tests: a cached state that drifts from the full pass fails here)."""
    import torch
    with torch.no_grad(), model.inference():
        full = model.teacher_forced_log_probs(batch)
        state, size = model.decode_start(batch)
        assert size == batch["response_in"].shape[0]
        steps = []
        for t in range(batch["response_in"].shape[1]):
            log_probs, state = model.decode_step(batch["response_in"][:, t:t + 1], state)
            steps.append(log_probs)
    assert torch.allclose(full, torch.stack(steps, dim=1), atol=1e-4)
    assert torch.allclose(full.exp().sum(-1), torch.ones(full.shape[:2]), atol=1e-5)
