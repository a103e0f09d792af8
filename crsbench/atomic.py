"""Atomic file writes: a reader sees the old file or the new one, never a half-written one."""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from crsbench.errors import StorageError

LOW_SPACE = 256 * 2**20      # free bytes under which a failed write is put down to a full disk


def _umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> None:
    """Call write(handle) on a temp file in the target's directory, fsync it, then rename over `path`.
    The file gets the permissions of a plainly created one (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        full = _disk_full(error, path.parent)
        Path(tmp).unlink(missing_ok=True)
        if full is not None:
            raise StorageError(
                f"{path}: could not be written, the disk is full ({full / 2**20:.0f} MiB free on the "
                f"file system of {path.parent}; the previous file, if any, is unchanged)",
                hint="free some space: `crsbench runs --prune-checkpoints` deletes the checkpoints of "
                     "finished runs (their model.pt stays); then resume with `crsbench run --resume RUN_DIR`"
            ) from error
        raise


def _disk_full(error: BaseException, folder: Path) -> int | None:
    """The free bytes when a failed write is down to a full disk (ENOSPC, or a writer such as
    torch.save that reports only a short write while almost nothing is free); else None."""
    if not isinstance(error, Exception):
        return None
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    no_space = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    return free if no_space or free < LOW_SPACE else None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda h: h.write(text))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda h: h.write(data), mode="wb")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
