"""Which data produced a result: a dataset's data version (its raw files' contents) and fingerprint
(the data version plus the preprocessing settings that differ from the built-in defaults: what keys
the preprocessing cache, less the code). Every run records both, so results on different data are
never mixed."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from crsbench.errors import DataError

# `data:` settings that do not change the preprocessed result
NOT_KEYED = frozenset({"dir", "cache_dir", "download"})
SHORT = 10                     # hex digits shown in tables and listings


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (always read: a timestamp cannot tell two quick writes apart)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class DataVersion:
    """`files`: hash of the dataset's raw input files; `fingerprint`: files plus keyed settings;
    `content`: hash of what preprocessing made of them (empty where not known), which tells two builds
    of one fingerprint apart if the preprocessing code changed between them."""

    dataset: str
    files: str
    fingerprint: str
    content: str = ""

    @property
    def short(self) -> str:
        return self.fingerprint[:SHORT]

    def as_dict(self) -> dict[str, str]:
        out = {"dataset": self.dataset, "files": self.files, "fingerprint": self.fingerprint}
        return {**out, "content": self.content} if self.content else out


def keyed_settings(settings: dict) -> dict:
    """The `data:` settings that change the preprocessed result."""
    return {k: v for k, v in settings.items() if k not in NOT_KEYED}


def _default_settings() -> dict:
    from crsbench.config.loader import DEFAULTS_FILE, read_yaml
    return read_yaml(DEFAULTS_FILE).get("data") or {}


def changed_settings(settings: dict) -> dict:
    """The keyed settings that differ from the built-in defaults: what the fingerprint hashes, so a
    data setting added to crsbench later (its default keeping the old behaviour) changes no
    existing fingerprint. The cache key also hashes the code, so a changed default still rebuilds."""
    defaults = _default_settings()
    return {k: v for k, v in keyed_settings(settings).items() if k not in defaults or defaults[k] != v}


def data_version(name: str, root: Path, input_files: tuple[str, ...], settings: dict) -> DataVersion:
    """Hash the raw files (named in errors when missing) and the keyed settings of one dataset."""
    files = hashlib.sha256(name.encode())
    for relative in input_files:
        path = root / relative
        if not path.exists():
            raise DataError(f"{path}: input file missing", hint="check the data directory")
        files.update(b"\0" + relative.encode() + b"\0" + file_sha256(path).encode())
    files_hex = files.hexdigest()
    whole = hashlib.sha256(files_hex.encode())
    whole.update(json.dumps(changed_settings(settings), sort_keys=True, default=str).encode())
    return DataVersion(name, files_hex, whole.hexdigest())
