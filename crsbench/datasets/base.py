"""What a dataset plugin implements, and how the data directory is found."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import ClassVar

import platformdirs

from crsbench.datasets.provenance import DataVersion, data_version
from crsbench.datasets.types import SPLITS, DatasetBundle

DATA_ENV = "CRSBENCH_DATA"
CACHE_ENV = "CRSBENCH_CACHE"


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data-dir / `data.dir`, else $CRSBENCH_DATA, else the user data dir (crsbench/data)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path(platformdirs.user_data_dir("crsbench")) / "data"


def resolve_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """`data.cache_dir`, else $CRSBENCH_CACHE, else the user cache dir (crsbench/preprocessed)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(platformdirs.user_cache_dir("crsbench")) / "preprocessed"


def in_train_fraction(conv_id: str, fraction: float) -> bool:
    """Whether `data.train_fraction` keeps a training conversation: deterministic by its id (sha1 of
    the id in the lowest `fraction` of the hash range), so smaller fractions are subsets of larger."""
    if fraction >= 1.0:
        return True
    value = int.from_bytes(hashlib.sha1(str(conv_id).encode()).digest()[:8], "big") / 2**64
    return value < fraction


class DatasetSpec:
    """A dataset: where its raw files live and how they become a DatasetBundle.

    Subclasses are registered with @register_dataset("name"). `settings` is the resolved `data:`
    section of the config; every setting in it but the locations (`provenance.NOT_KEYED`) keys the
    preprocessing cache and the data fingerprint.
    """

    #: YAML with this dataset's overrides of the `data:` (and other) config sections, or None.
    config_file: ClassVar[Path | None] = None
    #: Sub-directory of the data directory holding the raw files.
    subdir: ClassVar[str] = ""
    #: Raw files (relative to the sub-directory) the build reads; they key the cache.
    input_files: ClassVar[tuple[str, ...]] = ()
    #: The splits the build produces (what `eval.splits` may name).
    splits: ClassVar[tuple[str, ...]] = SPLITS

    def __init__(self, data_dir: Path, settings: dict) -> None:
        self.root = Path(data_dir) / self.subdir
        self.settings = settings

    def ensure_files(self) -> None:
        """Make sure every input file is present; the default only checks, and names what is missing."""
        from crsbench.errors import DataError
        missing = [name for name in self.input_files if not (self.root / name).exists()]
        if missing:
            raise DataError(f"missing data files in {self.root.resolve()}: {', '.join(missing)}",
                            hint="put them there, or point --data-dir / $CRSBENCH_DATA at the directory "
                                 f"that holds a '{self.subdir}/' folder with them")

    def data_version(self) -> DataVersion:
        """The content hash of the input files, and the fingerprint with the keyed settings."""
        name = getattr(type(self), "registered_name", type(self).__name__)
        return data_version(name, self.root, self.input_files, self.settings)

    def split_file(self, split: str) -> Path:
        """The raw file a split is read from (named in errors about that split)."""
        return self.root / f"{split}_data.jsonl"

    def build(self) -> DatasetBundle:
        """Full preprocessing from the raw files."""
        raise NotImplementedError
