"""The results database: one SQLite file with every run, its config, seed, code version,
metrics and timings. `crsbench compare` reads from it."""
from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import crsbench

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, model TEXT NOT NULL, dataset TEXT NOT NULL, tag TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL, code_version TEXT NOT NULL,
    run_dir TEXT NOT NULL, recorded_at TEXT NOT NULL
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


def code_version() -> str:
    """Package version, plus the git commit (and '+dirty') of a source checkout when there is one."""
    version = crsbench.__version__
    root = Path(crsbench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}" if commit else version


class ResultStore:
    """Access to one results database (created on first use; safe for concurrent writers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise RuntimeError(f"{self.path}: results schema {version}, this crsbench knows {SCHEMA_VERSION}")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def record_run(self, *, run_id: str, model: str, dataset: str, tag: str, seed: int, config: dict,
                   code_version: str, metrics: dict[str, float], timings: dict[str, float], run_dir: str,
                   status: str) -> None:
        """Insert or replace a run with its metrics ("split/view/metric" keys) and timings."""
        now = datetime.now(timezone.utc).isoformat()
        with self._connect() as db:
            db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (run_id, model, dataset, tag or "", int(seed), status, json.dumps(config),
                        code_version, run_dir, now))
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?)",
                           [(run_id, k, float(v)) for k, v in metrics.items()])
            db.executemany("INSERT INTO timings VALUES (?, ?, ?)",
                           [(run_id, k, float(v)) for k, v in timings.items()])

    def runs(self, dataset: str | None = None, model: str | None = None) -> list[dict]:
        """Runs (newest last), optionally of one dataset / model."""
        query, args = "SELECT run_id, model, dataset, tag, seed, status, code_version, run_dir, recorded_at FROM runs", []
        conditions = []
        for column, value in (("dataset", dataset), ("model", model)):
            if value is not None:
                conditions.append(f"{column} = ?")
                args.append(value)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY recorded_at, run_id"
        with self._connect() as db:
            cols = ["run_id", "model", "dataset", "tag", "seed", "status", "code_version", "run_dir", "recorded_at"]
            return [dict(zip(cols, row)) for row in db.execute(query, args)]

    def get_run(self, run_id: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT run_id, model, dataset, tag, seed, status, config, code_version, "
                             "run_dir, recorded_at FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        cols = ["run_id", "model", "dataset", "tag", "seed", "status", "config", "code_version", "run_dir",
                "recorded_at"]
        out = dict(zip(cols, row))
        out["config"] = json.loads(out["config"])
        return out

    def metrics(self, run_id: str) -> dict[str, float]:
        with self._connect() as db:
            return dict(db.execute("SELECT name, value FROM metrics WHERE run_id = ?", (run_id,)))

    def timings(self, run_id: str) -> dict[str, float]:
        with self._connect() as db:
            return dict(db.execute("SELECT name, seconds FROM timings WHERE run_id = ?", (run_id,)))
