"""Fetching missing raw files from their public release, verified by git blob id.

Files are verified when downloaded: the bytes must hash (as `git hash-object` does) to the blob id
recorded here, else nothing is written. Files already in the data directory are used as they are:
the shared ReDial copy, for instance, holds a partial train split whose blob differs from upstream.
Where only a prefix of an upstream blob id is known (upstream train_data.jsonl), the prefix is
checked.
"""
from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from loguru import logger

from crsbench.atomic import atomic_write_bytes
from crsbench.errors import DataError

KGSF_RAW = "https://raw.githubusercontent.com/RUCAIBox/KGSF/master/"


@dataclass(frozen=True)
class ReleaseFile:
    """A raw file: its path in the data directory, where it comes from, its git blob id (or prefix)."""

    path: str
    url: str | None          # None: no public download address is known
    blob_id: str


KGSF_REDIAL_FILES: tuple[ReleaseFile, ...] = (
    ReleaseFile("train_data.jsonl", KGSF_RAW + "data/train_data.jsonl", "68636442"),
    ReleaseFile("valid_data.jsonl", KGSF_RAW + "data/valid_data.jsonl", "2a31bda13975146e45c7cbfe092903d5efa98e4a"),
    ReleaseFile("test_data.jsonl", KGSF_RAW + "data/test_data.jsonl", "76a17ec7f930e0ceb27869acbe334e361d5fc035"),
    ReleaseFile("entity2entityId.pkl", KGSF_RAW + "data/entity2entityId.pkl", "579219534ad6784349e23e1a22872865d3810a4a"),
    ReleaseFile("id2entity.pkl", KGSF_RAW + "data/id2entity.pkl", "efe6b0c45ed250857fac98379c49018b9a9358ca"),
    ReleaseFile("movie_ids.pkl", KGSF_RAW + "data/movie_ids.pkl", "a8f97058ba6d73668b5d6ebdfb667f20ed04622e"),
    ReleaseFile("subkg.pkl", KGSF_RAW + "data/subkg.pkl", "8f77f29896845f46a548bcd0bde40d4b8783cb21"),
    ReleaseFile("stopwords.txt", KGSF_RAW + "stopwords.txt", "e0952162ac69773fcf4c4f31f947cce7d4c4b782"),
    # one-hop ConceptNet subgraph from a public KGSF variant (ShupeiLi/KGSF); no stable raw address
    ReleaseFile("conceptnet/conceptnet_one_hop_edges.txt", None, "33061c5f9adbe6d9e47a4ca68119e82c9632d7cd"),
    ReleaseFile("conceptnet/conceptnet_one_hop_key2index.json", None, "f1f2605d42f40da00c90fa808cf42bf05aec3c4d"),
)


def git_blob_id(data: bytes) -> str:
    """The id git gives these bytes as a blob: sha1 of "blob <size>\\0" + bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify_bytes(data: bytes, expected: str, source: str) -> None:
    """DataError unless the blob id of `data` equals `expected` (or starts with it, for a prefix)."""
    actual = git_blob_id(data)
    if not actual.startswith(expected.lower()):
        raise DataError(f"{source}: git blob id {actual} does not match the release's {expected}",
                        hint="the file is corrupt or a different version; delete it and fetch it again")


def verify_file(path: str | Path, expected: str) -> None:
    """Check a file on disk against its known blob id (or prefix)."""
    verify_bytes(Path(path).read_bytes(), expected, str(path))


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def ensure_files(root: Path, files: Sequence[ReleaseFile], allow_download: bool = True,
                 fetch: Callable[[str, float], bytes] = _fetch, timeout: float = 10.0) -> None:
    """Make sure every file exists under `root`: download and verify the missing ones, or raise a
    DataError listing each missing file, where to put it, and where it comes from."""
    missing = [f for f in files if not (root / f.path).exists()]
    if not missing:
        return
    failures: list[str] = []
    for f in missing:
        if not allow_download or f.url is None:
            failures.append(f"{f.path} ({'download disabled' if f.url else 'no public download address'})")
            continue
        try:
            logger.info(f"downloading {f.url}")
            data = fetch(f.url, timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            failures.append(f"{f.path} (download failed: {getattr(exc, 'reason', exc)})")
            continue
        verify_bytes(data, f.blob_id, f.url)
        atomic_write_bytes(root / f.path, data)
    if failures:
        sources = "\n".join(f"    {f.path}: {f.url or 'see ../shared/data/README.md'}" for f in missing)
        raise DataError(
            f"missing data files in {root}:\n  " + "\n  ".join(failures),
            hint=f"put the files into {root} (or point --data-dir / $CRSBENCH_DATA at a directory "
                 f"that has a '{root.name}/' folder with them). Sources:\n{sources}")
