"""`crsbench runs --archive / --unarchive`: the finished runs of a runs tree as one small file.

A runs tree holds gigabytes of weights and checkpoints, and lives on one machine. What the tables,
figures and paired tests need is much smaller: each finished run's record (`RunDir.RECORD`:
run.json, config.yaml, metrics.json, history.jsonl, and the per-instance outcomes). An archive keeps
exactly that, as `<dataset>/<variant>/<run>/<file>` members of a gzip'd tar, so a new machine can
`--unarchive` it and run `compare`, `plot` and `compare --baseline` again (not `evaluate`, `chat` or
`explain`, which need the weights). Unarchiving reads only members of that shape whose names are
record files, never overwrites a run that is already there, and rebuilds results.sqlite.
"""
from __future__ import annotations

import re
import tarfile
from datetime import datetime, timezone
from pathlib import Path

from crsbench.atomic import atomic_write
from crsbench.errors import DataError
from crsbench.run_dir import FINISHED, RunDir, find_runs

_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _finished_within(meta: dict, since: datetime | None, until: datetime | None) -> bool:
    if meta.get("status") != FINISHED:
        return False
    if since is None and until is None:
        return True
    finished = _utc(datetime.fromisoformat(meta["finished"]))
    return (since is None or finished >= _utc(since)) and (until is None or finished < _utc(until))


def archive_runs(root: str | Path, out: str | Path, dataset: str | None = None,
                 since: datetime | None = None, until: datetime | None = None) -> dict[str, int]:
    """Write every finished run's record under `root` (one dataset's, or all; with `since` and
    `until`, only the runs finished at or after `since` and before `until`: one session's, or a part
    of it, so that each archive stays small) into `out` (.tar.gz).
    Returns {"runs": N, "files": F, "bytes": size of the archive}."""
    root, out = Path(root), Path(out)
    runs = [r for r in find_runs(root, dataset) if _finished_within(r.read_meta(), since, until)]
    if not runs:
        window = (f" since {_utc(since).isoformat()}" if since else "") + (f" before {_utc(until).isoformat()}"
                                                                           if until else "")
        raise DataError(f"{root}: no finished runs" + (f" of {dataset}" if dataset else "") + window
                        + " to archive", hint="crsbench runs --output-dir DIR lists what is there")
    files = 0

    def write(handle) -> None:
        nonlocal files
        with tarfile.open(fileobj=handle, mode="w:gz") as tar:
            for run in runs:
                name = "/".join(run.path.parts[-3:])
                for path in run.record_files():
                    tar.add(path, arcname=f"{name}/{path.name}", recursive=False)
                    files += 1

    atomic_write(out, write, mode="wb")
    return {"runs": len(runs), "files": files, "bytes": out.stat().st_size}


def _member_path(member: tarfile.TarInfo, archive: Path) -> tuple[str, str]:
    """(run's relative dir, file name) of a member, or a DataError naming it."""
    parts = member.name.split("/")
    if (not member.isfile() or len(parts) != 4 or not all(_PART.fullmatch(p) for p in parts)
            or not RunDir.is_record_file(parts[3])):
        raise DataError(f"{archive}: member '{member.name}' is not a run record file "
                        f"(<dataset>/<variant>/<run>/<{', '.join(RunDir.RECORD)} or outcomes_*.npz>)",
                        hint="unarchive only files written by `crsbench runs --archive`")
    return "/".join(parts[:3]), parts[3]


def unarchive_runs(archive: str | Path, root: str | Path) -> dict[str, int]:
    """Add the runs of `archive` to the runs tree `root` (runs already there are kept as they are),
    then rebuild its results.sqlite. Returns {"added": N, "kept": K, "indexed": I}."""
    from crsbench.results.store import reindex
    archive, root = Path(archive), Path(root)
    try:
        tar = tarfile.open(archive, mode="r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise DataError(f"{archive}: not a readable .tar.gz ({exc})",
                        hint="pass a file written by `crsbench runs --archive`") from None
    with tar:
        members = tar.getmembers()
        by_run: dict[str, list[tuple[tarfile.TarInfo, str]]] = {}
        for member in members:                             # check everything before writing anything
            run, name = _member_path(member, archive)
            by_run.setdefault(run, []).append((member, name))
        for run, entries in by_run.items():
            if RunDir.META not in {name for _, name in entries}:
                raise DataError(f"{archive}: run '{run}' has no {RunDir.META}",
                                hint="unarchive only files written by `crsbench runs --archive`")
        added = kept = 0
        for run, entries in sorted(by_run.items()):
            target = RunDir(root / run)
            if target.exists():
                kept += 1
                continue
            target.path.mkdir(parents=True, exist_ok=True)
            for member, name in sorted(entries, key=lambda e: e[1] == RunDir.META):   # run.json last
                data = tar.extractfile(member).read()
                atomic_write(target.path / name, lambda handle: handle.write(data), mode="wb")
            added += 1
    indexed, _ = reindex(root)
    return {"added": added, "kept": kept, "indexed": indexed}
