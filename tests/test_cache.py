"""The preprocessing cache: exact round trip; truncation, corruption, changed input or setting rebuild."""
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_bundle
from crsbench.datasets import cache
from crsbench.datasets.base import DatasetSpec


class CountingSpec(DatasetSpec):
    """A dataset whose build() counts its calls and reads one input file."""
    subdir = "tiny"
    input_files = ("input.txt",)
    builds = 0

    def build(self):
        type(self).builds += 1
        return make_tiny_bundle()


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "data" / "tiny").mkdir(parents=True)
    (tmp_path / "data" / "tiny" / "input.txt").write_text("v1")
    CountingSpec.builds = 0
    return CountingSpec(tmp_path / "data", {"kg_min_relation_edges": 1000, "dir": "ignored"})


def _same(a, b):
    assert a.splits.keys() == b.splits.keys()
    for split in a.splits:
        assert [(c.conv_id, c.turns, c.sample_turns, c.item_feedback) for c in a.splits[split]] == \
               [(c.conv_id, c.turns, c.sample_turns, c.item_feedback) for c in b.splits[split]]
    for kg in ("entity_kg", "word_kg"):
        x, y = getattr(a, kg), getattr(b, kg)
        assert np.array_equal(x.edge_index, y.edge_index) and np.array_equal(x.edge_type, y.edge_type)
        assert (x.num_nodes, x.relation_names, x.node_names) == (y.num_nodes, y.relation_names, y.node_names)
    assert a.items == b.items and a.item_titles == b.item_titles and a.vocab.tokens == b.vocab.tokens
    assert np.array_equal(a.word_embeddings, b.word_embeddings)


def test_round_trip_then_cache_hit(spec, tmp_path):
    first = cache.load_or_build(spec, tmp_path / "cache")
    second = cache.load_or_build(spec, tmp_path / "cache")
    assert CountingSpec.builds == 1
    _same(make_tiny_bundle(), second)
    assert second.fingerprint == first.fingerprint == spec.data_version().fingerprint
    assert second.data_files == spec.data_version().files
    assert cache.cache_key(spec) != spec.data_version().fingerprint        # the key adds the code
    # the content digest: the same for the build and its cached copy, other for other embeddings
    assert len(first.content) == 64 and second.content == first.content
    other = make_tiny_bundle()
    other.word_embeddings = other.word_embeddings.copy()
    other.word_embeddings[1, 0] += 1e-6
    assert cache.content_digest(*cache.to_builtins(other)) != first.content
    assert cache.content_digest(*cache.to_builtins(make_tiny_bundle())) == first.content


def _entry(tmp_path) -> Path:
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    return entry


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "delete"])
def test_damaged_entry_is_rebuilt(spec, tmp_path, damage):
    cache.load_or_build(spec, tmp_path / "cache")
    entry = _entry(tmp_path)
    target = entry / "bundle.pkl"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-50])
    elif damage == "flip":
        raw = bytearray((entry / "arrays.npz").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (entry / "arrays.npz").write_bytes(bytes(raw))
    elif damage == "manifest":
        (entry / "manifest.json").write_text("{not json")
    else:
        target.unlink()
    bundle = cache.load_or_build(spec, tmp_path / "cache")
    assert CountingSpec.builds == 2
    _same(make_tiny_bundle(), bundle)
    cache.load_or_build(spec, tmp_path / "cache")
    assert CountingSpec.builds == 2                      # the rebuilt entry is good again


def test_changed_input_or_setting_changes_the_key(spec, tmp_path):
    first = cache.load_or_build(spec, tmp_path / "cache")
    (spec.root / "input.txt").write_text("v2")
    second = cache.load_or_build(spec, tmp_path / "cache")
    assert CountingSpec.builds == 2
    assert second.data_files != first.data_files and second.fingerprint != first.fingerprint
    spec.settings["kg_min_relation_edges"] = 5
    third = cache.load_or_build(spec, tmp_path / "cache")
    assert CountingSpec.builds == 3
    # a setting changes the fingerprint, not the data version (the raw files)
    assert third.data_files == second.data_files and third.fingerprint != second.fingerprint
    spec.settings["dir"] = "elsewhere"                   # not a preprocessing setting
    fourth = cache.load_or_build(spec, tmp_path / "cache")
    assert CountingSpec.builds == 3 and fourth.fingerprint == third.fingerprint


def test_no_partial_entries_are_left_behind(spec, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(cache.np, "savez", fail)
    cache.load_or_build(spec, tmp_path / "cache")        # build succeeds, caching is skipped
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]


def test_parallel_builds_of_one_entry_build_once(spec, tmp_path):
    """Two processes (a sweep's workers) asking for the same entry: one builds, the other waits for
    the lock and reads what the first wrote."""
    import multiprocessing
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        fingerprints = pool.starmap(_build_and_count, [(spec.root.parent, tmp_path / "cache")] * 2)
    assert fingerprints[0][0] == fingerprints[1][0]
    assert sorted(n for _, n in fingerprints) == [0, 1]          # builds per process: one built, one read


def _build_and_count(data_dir, cache_dir):
    import time
    class SlowSpec(CountingSpec):
        def build(self):
            time.sleep(1.0)
            return super().build()
    local = SlowSpec(data_dir, {"kg_min_relation_edges": 1000})
    SlowSpec.builds = 0
    bundle = cache.load_or_build(local, cache_dir)
    return bundle.fingerprint, SlowSpec.builds


def test_a_new_setting_at_its_default_changes_no_fingerprint(spec):
    """Runs recorded before a data setting existed keep their fingerprint when it arrives with a
    default that keeps the old behaviour; a non-default value is another fingerprint."""
    from crsbench.config.loader import DEFAULTS_FILE, read_yaml
    defaults = read_yaml(DEFAULTS_FILE)["data"]
    older = {k: v for k, v in defaults.items() if k != "release_instances"}
    now = CountingSpec(spec.root.parent, dict(defaults)).data_version()
    assert CountingSpec(spec.root.parent, older).data_version() == now
    assert CountingSpec(spec.root.parent, {**defaults, "release_instances": True}).data_version().fingerprint \
        != now.fingerprint
    assert CountingSpec(spec.root.parent, {**defaults, "dir": "/elsewhere"}).data_version() == now
