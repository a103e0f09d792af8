"""The results database: an SQLite index of the finished runs under one runs root (config, seed,
code and data versions, protocol, metrics, timings). `crsbench compare` reads it.

It is derived, never the only copy: every row is built from a run directory's run.json,
config.yaml and metrics.json (`record_run_dir`), so `crsbench runs --reindex` (`reindex`) rebuilds
it from the run directories, and an index of an older schema is rebuilt the same way when opened.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from loguru import logger

import crsbench
from crsbench.errors import DataError
from crsbench.run_dir import FINISHED, RESULTS_DB, RunDir, find_runs

SCHEMA_VERSION = 2
_COLUMNS = ("run_id", "model", "dataset", "tag", "seed", "status", "config", "code_version", "run_dir",
            "recorded_at", "data_version", "data_fingerprint", "eval_data_version", "protocol")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, model TEXT NOT NULL, dataset TEXT NOT NULL, tag TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL, code_version TEXT NOT NULL,
    run_dir TEXT NOT NULL, recorded_at TEXT NOT NULL, data_version TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL, eval_data_version TEXT NOT NULL, protocol TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS timings (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    name TEXT NOT NULL, seconds REAL, PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS runs_by_dataset ON runs(dataset, model, tag, seed);
"""
UNKNOWN = "unknown"            # data version of a run recorded before versions were kept


def code_version() -> str:
    """Package version, plus the git commit (and '+dirty') of a source checkout when there is one."""
    version = crsbench.__version__
    root = Path(crsbench.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return version
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}" if commit else version


class OldSchema(Exception):
    """The database was written by another crsbench schema: rebuild it from the run directories."""


def _corrupt(path: Path, exc: Exception) -> DataError:
    root = path.parent
    return DataError(f"{path}: the results database is unreadable ({exc}); every run's metrics.json is "
                     "kept in its run directory",
                     hint=f"rebuild it from the run directories: crsbench runs --reindex --output-dir {root}")


class ResultStore:
    """Access to one results database (created on first use; safe for concurrent writers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if version != SCHEMA_VERSION and tables:
                    raise OldSchema(f"{self.path}: schema {version}, this crsbench writes {SCHEMA_VERSION}")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _run(self, query: str, args: tuple = ()) -> list[tuple]:
        try:
            with self._connect() as db:
                return list(db.execute(query, args))
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from None

    def record_run(self, *, run_id: str, model: str, dataset: str, tag: str, seed: int, config: dict,
                   code_version: str, metrics: dict[str, float], timings: dict[str, float], run_dir: str,
                   status: str, recorded_at: str, data_version: str = UNKNOWN,
                   data_fingerprint: str = UNKNOWN, eval_data_version: str | None = None,
                   protocol: str = "crsbench") -> None:
        """Insert or replace a run with its metrics ("split/view/metric" keys) and timings."""
        row = (run_id, model, dataset, tag or "", int(seed), status, json.dumps(config), code_version,
               run_dir, recorded_at, data_version, data_fingerprint, eval_data_version or data_version,
               protocol)
        try:
            with self._connect() as db:
                db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                db.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(_COLUMNS))})", row)
                db.executemany("INSERT INTO metrics VALUES (?, ?, ?)",
                               [(run_id, k, float(v)) for k, v in metrics.items()])
                db.executemany("INSERT INTO timings VALUES (?, ?, ?)",
                               [(run_id, k, float(v)) for k, v in timings.items()])
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from None

    def runs(self, dataset: str | None = None, model: str | None = None) -> list[dict]:
        """Runs (oldest recorded first), optionally of one dataset / model; without their configs."""
        columns = [c for c in _COLUMNS if c != "config"]
        query, args = f"SELECT {', '.join(columns)} FROM runs", []
        conditions = []
        for column, value in (("dataset", dataset), ("model", model)):
            if value is not None:
                conditions.append(f"{column} = ?")
                args.append(value)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY recorded_at, run_id"
        return [dict(zip(columns, row)) for row in self._run(query, tuple(args))]

    def get_run(self, run_id: str) -> dict | None:
        rows = self._run(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        out = dict(zip(_COLUMNS, rows[0]))
        out["config"] = json.loads(out["config"])
        return out

    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self._run("SELECT name, value FROM metrics WHERE run_id = ?", (run_id,)))

    def timings(self, run_id: str) -> dict[str, float]:
        return dict(self._run("SELECT name, seconds FROM timings WHERE run_id = ?", (run_id,)))


def record_run_dir(store: ResultStore, run: RunDir) -> None:
    """Index one finished run from its own files (run.json, config.yaml, metrics.json)."""
    meta, results = run.read_meta(), run.read_metrics()
    config = run.read_config()
    data = meta.get("data") or {}
    store.record_run(
        run_id=meta.get("run_id") or run.run_id(), model=meta["model"], dataset=meta["dataset"],
        tag=config["run"].get("tag", ""), seed=config["run"]["seed"], config=config,
        code_version=results.get("code_version") or meta.get("code_version", UNKNOWN),
        metrics=results.get("metrics", {}), timings=results.get("timings", {}), run_dir=str(run.path),
        status=meta.get("status", FINISHED), recorded_at=results.get("recorded_at") or meta.get("finished", ""),
        data_version=data.get("files", UNKNOWN), data_fingerprint=data.get("fingerprint", UNKNOWN),
        eval_data_version=(results.get("eval_data") or {}).get("files"),
        protocol=meta.get("protocol") or "crsbench")


def reindex(root: str | Path) -> tuple[int, list[str]]:
    """Rebuild `root`/results.sqlite from the finished runs' directories (into a new file, renamed
    over the old one). Returns the number of runs indexed and the run dirs that could not be read."""
    root = Path(root)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{RESULTS_DB}.", suffix=".tmp")
    os.close(fd)
    Path(tmp).unlink()
    skipped: list[str] = []
    count = 0
    try:
        store = ResultStore(tmp)
        for run in find_runs(root):
            try:
                meta = run.read_meta()
                if meta.get("status") != FINISHED or not run.metrics_file.exists():
                    continue
                record_run_dir(store, run)
                count += 1
            except (DataError, KeyError, TypeError) as exc:
                skipped.append(f"{run.path} ({getattr(exc, 'message', exc)})")
        os.replace(tmp, root / RESULTS_DB)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count, skipped


def results_db(root: str | Path) -> ResultStore:
    """The results database of a runs root; one of an older schema is rebuilt from the run dirs."""
    path = Path(root) / RESULTS_DB
    try:
        return ResultStore(path)
    except OldSchema as exc:
        logger.info(f"{exc}: rebuilding it from the run directories")
        reindex(root)
        return ResultStore(path)


def record_finished(run: RunDir, meta: dict[str, Any] | None = None, root: str | Path | None = None) -> Path:
    """Index a run that just finished (or was re-scored) in the database of `root`, else of the runs
    root it belongs to; returns the database path. A corrupt database is a DataError saying how to
    rebuild it."""
    root = Path(root) if root is not None else run.results_root(meta)
    record_run_dir(results_db(root), run)
    return root / RESULTS_DB
