"""`crsbench runs --prune-checkpoints`: free the disk that finished runs' checkpoints hold.

A finished run keeps its final weights in `model.pt` (what `evaluate`, `chat`, `explain` and
`init_from` read); `checkpoints/` (last.pt, best.pt: weights plus optimizer state, about 0.7 GB a
KGSF run) only serves a resume, and a finished run is never resumed. Runs that are running,
interrupted, stale or failed keep theirs: they may still resume.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from crsbench.errors import CrsbenchError
from crsbench.run_dir import FINISHED, find_runs, shown_status


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def prune_checkpoints(root: str | Path, dataset: str | None = None, dry_run: bool = False) -> dict:
    """Delete `checkpoints/` of every finished run under `root` that has its `model.pt`;
    returns {"runs": [run dirs], "bytes": freed (or, with dry_run, what would be)}."""
    pruned, freed = [], 0
    for run in find_runs(Path(root), dataset):
        if not run.checkpoints.is_dir() or not run.weights.is_file():
            continue
        try:
            if shown_status(run.read_meta()) != FINISHED:
                continue
        except CrsbenchError:
            continue
        freed += _size(run.checkpoints)
        pruned.append(str(run.path))
        if not dry_run:
            shutil.rmtree(run.checkpoints)
    return {"runs": pruned, "bytes": freed}
