"""On-disk cache of preprocessed datasets: keyed by inputs, settings and code; checked on load.

A cache entry is a directory `<dataset>-<key>` holding `bundle.pkl` (plain builtins only, read back
through the allow-list unpickler), `arrays.npz` (numpy arrays, no pickles) and `manifest.json`
(the key and the sha256 of both files). It is written into a temporary directory and renamed into
place, so a reader never sees half an entry. A missing, truncated, corrupt or stale entry is
reported and rebuilt.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from loguru import logger

from crsbench.datasets import safe_pickle
from crsbench.datasets.base import DatasetSpec
from crsbench.datasets.provenance import DataVersion
from crsbench.datasets.types import Conversation, DatasetBundle, KnowledgeGraph, Turn, Vocabulary
from crsbench.errors import DataError

_PACKAGE_DIR = Path(__file__).resolve().parent


def _code_hash() -> str:
    """Hash of the preprocessing code: any change to crsbench/datasets invalidates the caches."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.glob("*.py")) + sorted(_PACKAGE_DIR.glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cache_key(spec: DatasetSpec, version: DataVersion | None = None) -> str:
    """sha256 over the data fingerprint (name, input files, relevant settings) and the code."""
    version = version or spec.data_version()
    return hashlib.sha256((version.fingerprint + _code_hash()).encode()).hexdigest()


# --- bundle <-> builtins + arrays ---------------------------------------------------------
def _kg_parts(kg: KnowledgeGraph, prefix: str, arrays: dict) -> tuple:
    arrays[f"{prefix}_edge_index"] = kg.edge_index
    arrays[f"{prefix}_edge_type"] = kg.edge_type
    return (kg.num_nodes, list(kg.relation_names), list(kg.node_names))


def _kg_from(parts: tuple, prefix: str, arrays) -> KnowledgeGraph:
    num_nodes, relations, names = parts
    return KnowledgeGraph(num_nodes, arrays[f"{prefix}_edge_index"], arrays[f"{prefix}_edge_type"],
                          relations, names)


def to_builtins(bundle: DatasetBundle) -> tuple[dict, dict[str, np.ndarray]]:
    """Split a bundle into a builtins-only structure and a dict of numpy arrays."""
    arrays: dict[str, np.ndarray] = {"word_embeddings": bundle.word_embeddings}
    splits = {split: [(c.conv_id, [(t.role, t.text, t.tokens, t.items, t.entities, t.words) for t in c.turns],
                       c.sample_turns, c.item_feedback) for c in convs]
              for split, convs in bundle.splits.items()}
    data = {"name": bundle.name, "splits": splits, "entity_kg": _kg_parts(bundle.entity_kg, "entity", arrays),
            "word_kg": _kg_parts(bundle.word_kg, "word", arrays), "items": list(bundle.items),
            "item_titles": dict(bundle.item_titles), "vocab": list(bundle.vocab.tokens),
            "fingerprint": bundle.fingerprint, "data_files": bundle.data_files, "stats": dict(bundle.stats),
            "mention_items": dict(bundle.mention_items)}
    return data, arrays


def from_builtins(data: dict, arrays) -> DatasetBundle:
    """Rebuild the bundle written by to_builtins."""
    splits = {split: [Conversation(cid, [Turn(*t) for t in turns], sample_turns, feedback)
                      for cid, turns, sample_turns, feedback in convs]
              for split, convs in data["splits"].items()}
    return DatasetBundle(data["name"], splits, _kg_from(data["entity_kg"], "entity", arrays),
                         _kg_from(data["word_kg"], "word", arrays), data["items"], data["item_titles"],
                         Vocabulary(data["vocab"]), arrays["word_embeddings"], data["fingerprint"],
                         data["stats"], data["mention_items"], data["data_files"])


def content_digest(data: dict, arrays: dict[str, np.ndarray]) -> str:
    """sha256 of a preprocessed bundle's contents (conversations, graphs, vocabulary, embeddings...),
    the raw files' hashes left out: equal exactly when two builds made the same thing."""
    digest = hashlib.sha256(pickle.dumps({k: v for k, v in data.items() if k not in ("fingerprint", "data_files")},
                                         protocol=5))
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# --- reading and writing entries ---------------------------------------------------------
def _entry_dir(cache_dir: Path, spec: DatasetSpec, key: str) -> Path:
    name = getattr(type(spec), "registered_name", type(spec).__name__)
    return cache_dir / f"{name}-{key[:20]}"


def entry_of(spec: DatasetSpec, cache_dir: Path) -> Path:
    """The cache entry this code's build of `spec` lives in (whether or not it exists yet)."""
    return _entry_dir(Path(cache_dir), spec, cache_key(spec))


def _read_entry(entry: Path, key: str) -> DatasetBundle:
    """Load and verify an entry; DataError (naming the file) if anything is off."""
    manifest_path = entry / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if manifest.get("key") != key:
        raise DataError(f"{manifest_path}: cache key differs (stale entry)")
    payload = {}
    for name in ("bundle.pkl", "arrays.npz"):
        raw = (entry / name).read_bytes()
        if hashlib.sha256(raw).hexdigest() != manifest.get("sha256", {}).get(name):
            raise DataError(f"{entry / name}: checksum mismatch (truncated or corrupt)")
        payload[name] = raw
    data = safe_pickle.loads(payload["bundle.pkl"], str(entry / "bundle.pkl"))
    with np.load(io.BytesIO(payload["arrays.npz"]), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    bundle = from_builtins(data, arrays)
    bundle.content = manifest.get("content") or content_digest(data, arrays)
    return bundle


def _write_entry(entry: Path, key: str, bundle: DatasetBundle) -> None:
    data, arrays = to_builtins(bundle)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
    try:
        pkl = pickle.dumps(data, protocol=5)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        files = {"bundle.pkl": pkl, "arrays.npz": buf.getvalue()}
        for name, raw in files.items():
            (tmp / name).write_bytes(raw)
        manifest = {"key": key, "sha256": {n: hashlib.sha256(r).hexdigest() for n, r in files.items()},
                    "content": bundle.content}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        for name in list(files) + ["manifest.json"]:
            with open(tmp / name, "rb") as handle:
                os.fsync(handle.fileno())
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def _building(entry: Path):
    """An exclusive lock per cache entry, so that parallel runs (a sweep's workers) build a dataset
    once: the others wait, then read the entry the first one wrote."""
    try:
        import fcntl
    except ImportError:                  # no flock (Windows): each process builds its own
        yield
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f".{entry.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _try_read(entry: Path, key: str) -> DatasetBundle | None:
    if not entry.exists():
        return None
    try:
        bundle = _read_entry(entry, key)
        logger.debug(f"loaded preprocessed data from {entry}")
        return bundle
    except (DataError, OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning(f"preprocessing cache {entry} is unusable ({exc}); rebuilding it")
        return None


def load_or_build(spec: DatasetSpec, cache_dir: Path) -> DatasetBundle:
    """The preprocessed bundle: from a verified cache entry, else built (and cached)."""
    version = spec.data_version()
    key = cache_key(spec, version)
    entry = _entry_dir(Path(cache_dir), spec, key)
    bundle = _try_read(entry, key)
    if bundle is not None:
        return bundle
    with ExitStack() as stack:
        try:
            stack.enter_context(_building(entry))
        except OSError:                  # a read-only cache dir: build without the lock
            pass
        bundle = _try_read(entry, key)   # built by another process while this one waited
        if bundle is not None:
            return bundle
        logger.info(f"preprocessing {spec.root} (cached afterwards in {entry})")
        bundle = spec.build()
        bundle.fingerprint, bundle.data_files = version.fingerprint, version.files
        bundle.content = content_digest(*to_builtins(bundle))
        try:
            _write_entry(entry, key, bundle)
        except OSError as exc:
            logger.warning(f"could not write the preprocessing cache {entry} ({exc}); continuing without it")
        return bundle
