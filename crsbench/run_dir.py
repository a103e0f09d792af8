"""The layout of one run directory, `<runs root>/<dataset>/<variant>/<time>-seed<seed>/`, in one type.

Every reader and writer of a run's files (runner, trainer, warm_start, evaluate, chat, human_eval,
`crsbench runs`) goes through RunDir, so a file name or the place of the results database is
decided here only. `run.json` records the runs root the run was created under; the results
database (`results.sqlite`) of a run is the one in that root.
"""
from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crsbench.atomic import atomic_write_json
from crsbench.errors import DataError

RESULTS_DB = "results.sqlite"

# run.json "status" values
RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
STALE = "stale"            # shown, never written: "running" in run.json, but its process is gone


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunDir:
    """The files of one run."""

    path: Path

    META = "run.json"          # run id, model, dataset, status, data version, times, progress
    CONFIG = "config.yaml"     # the resolved config the run used
    WEIGHTS = "model.pt"       # the final weights
    METRICS = "metrics.json"   # test metrics, timings and per-stage training summaries
    LOG = "log.txt"
    HISTORY = "history.jsonl"  # one JSON line per training epoch

    # --- paths ---------------------------------------------------------------------------
    @property
    def meta_file(self) -> Path:
        return self.path / self.META

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def weights(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def history(self) -> Path:
        """One JSON line per training epoch: stage, epoch, train loss, validation and curve metrics."""
        return self.path / self.HISTORY

    def predictions(self, split: str) -> Path:
        """Per-instance predictions for people (JSON lines; `evaluate --dump`)."""
        return self.path / f"predictions_{split}.jsonl"

    def outcomes(self, split: str) -> Path:
        """Per-instance outcomes for significance tests (ranks, per-response scores; npz)."""
        return self.path / f"outcomes_{split}.npz"

    # The weightless record of a run: what `compare`, `plot`, `history` and the paired tests read,
    # and what `crsbench runs --archive` keeps (weights, checkpoints, logs and dumps are left out).
    RECORD = (META, CONFIG, METRICS, HISTORY)
    RECORD_PATTERN = re.compile(r"outcomes_[A-Za-z0-9_]+\.npz")

    @classmethod
    def is_record_file(cls, name: str) -> bool:
        return name in cls.RECORD or cls.RECORD_PATTERN.fullmatch(name) is not None

    def record_files(self) -> list[Path]:
        """This run's record files that exist, in a fixed order."""
        return sorted(p for p in self.path.iterdir() if p.is_file() and self.is_record_file(p.name))

    # --- creation --------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, dataset: str, model: str, tag: str, seed: int) -> "RunDir":
        """A new, empty run directory under `root` (a suffix -2, -3... if the name is taken)."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        variant = model + (("_" + re.sub(r"[^A-Za-z0-9_.-]+", "", tag.replace(" ", "_"))) if tag else "")
        base = Path(root) / dataset / variant / f"{stamp}-seed{seed}"
        path, n = base, 1
        while True:
            try:
                path.mkdir(parents=True)
                return cls(path)
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")

    def run_id(self) -> str:
        """`<dataset>/<variant>/<name>`: stable when the runs root moves."""
        return "/".join(self.path.resolve().parts[-3:])

    # --- run.json --------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.meta_file.exists()

    def read_meta(self) -> dict[str, Any]:
        """run.json; a missing or malformed one is a DataError naming the file."""
        try:
            text = self.meta_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"{self.path}: not a run directory (no {self.META})",
                            hint="pass a directory created by `crsbench run`, e.g. runs/redial/kgsf/<run>"
                            ) from None
        except UnicodeDecodeError:
            text = None
        try:
            meta = json.loads(text) if text is not None else None
        except json.JSONDecodeError as exc:
            raise DataError(f"{self.meta_file}:{exc.lineno}: malformed JSON ({exc.msg})",
                            hint="restore the file, or start the run again") from None
        missing = [k for k in ("model", "dataset") if not isinstance(meta, dict) or not isinstance(meta.get(k), str)]
        if missing:
            raise DataError(f"{self.meta_file}: not a crsbench run record (missing {', '.join(missing)})",
                            hint="restore the file, or start the run again")
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_json(self.meta_file, meta)

    def update_meta(self, **changes: Any) -> dict[str, Any]:
        """Merge `changes` into run.json (atomically) and return the new record."""
        meta = self.read_meta()
        meta.update(changes)
        self.write_meta(meta)
        return meta

    def heartbeat(self, **progress: Any) -> None:
        """Record that the run is alive, with where training is (shown by `crsbench runs`)."""
        self.update_meta(heartbeat=now(), progress=progress)

    def read_config(self) -> dict[str, Any]:
        from crsbench.config.loader import load_saved_config
        return load_saved_config(self.config_file)

    def read_config_today(self) -> dict[str, Any]:
        """The saved config with the settings added to crsbench since it was saved at their defaults,
        so a run resumed, scored or started from (`run.init_from`) behaves as it did."""
        from loguru import logger

        from crsbench.config.loader import fill_defaults, resolve_config
        from crsbench.registry import get_dataset, get_model
        meta = self.read_meta()
        config = self.read_config()
        missing = fill_defaults(resolve_config(get_model(meta["model"]), get_dataset(meta["dataset"])), config)
        if missing:
            logger.warning(f"{self.config_file} was saved by an older crsbench; today's defaults fill "
                           f"{', '.join(missing)}")
        return config

    def read_metrics(self) -> dict[str, Any]:
        """metrics.json, or {} when the run has none yet; malformed is a DataError naming the file."""
        try:
            return json.loads(self.metrics_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.metrics_file}: malformed JSON ({exc})",
                            hint=f"re-score the run: crsbench evaluate --run {self.path}") from None

    # --- where the results database is -----------------------------------------------------
    def results_root(self, meta: dict[str, Any] | None = None) -> Path:
        """The runs root whose results.sqlite indexes this run: the one recorded in run.json when it
        still holds this run, else the folder three levels up (a moved or copied runs tree)."""
        meta = meta if meta is not None else self.read_meta()
        recorded = meta.get("runs_root")
        here = self.path.resolve()
        if recorded and (Path(recorded) / Path(*here.parts[-3:])).resolve() == here:
            return Path(recorded)
        layout = (len(here.parts) >= 4 and here.parts[-3] == meta.get("dataset")
                  and here.parts[-2].split("_")[0] == str(meta.get("model")).split("_")[0])
        if layout:                    # a moved runs tree: <root>/<dataset>/<variant>/<run>
            return here.parents[2]
        raise DataError(f"{self.path}: this run directory is not inside a runs root (it was copied out of "
                        f"{recorded or 'its runs root'}), so it is unclear which results.sqlite records it",
                        hint="pass --output-dir with the runs root that should record it")


def _start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot, Linux /proc); None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process_identity() -> dict[str, Any]:
    """Host, pid and start time of this process, so a later reader can tell a dead run from a live one."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _start_ticks(os.getpid())}


def is_alive(meta: dict[str, Any]) -> bool | None:
    """Whether the process recorded in run.json still runs: None when it ran on another host."""
    if meta.get("host") != socket.gethostname() or not isinstance(meta.get("pid"), int):
        return None
    try:
        os.kill(meta["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = meta.get("pid_start")
    return started is None or _start_ticks(meta["pid"]) in (None, started)   # else a reused pid


def shown_status(meta: dict[str, Any], stale_after_s: float = 3600.0) -> str:
    """The status to show: run.json's, except a `running` run whose process is gone is `stale`
    (killed with SIGKILL, or the machine went down). On another host, a run whose heartbeat is older
    than `stale_after_s` is stale."""
    status = meta.get("status", RUNNING)
    if status != RUNNING:
        return status
    alive = is_alive(meta)
    if alive is None:
        beat = meta.get("heartbeat") or meta.get("started")
        try:
            age = (datetime.now(timezone.utc) - datetime.fromisoformat(beat)).total_seconds()
        except (TypeError, ValueError):
            return STALE
        return RUNNING if age < stale_after_s else STALE
    return RUNNING if alive else STALE


def find_runs(root: Path, dataset: str | None = None) -> list[RunDir]:
    """Every run directory under a runs root (optionally of one dataset), oldest name first."""
    pattern = f"{dataset}/*/*/{RunDir.META}" if dataset else f"*/*/*/{RunDir.META}"
    return [RunDir(p.parent) for p in sorted(Path(root).glob(pattern))]


def made_on_build(meta: dict[str, Any], build: str) -> bool:
    """Whether a run started, and (if resumed) resumed, on the preprocessing build `build` (run.json's
    `data.content`; `content_at_resume` is recorded only where a resume found another build). A run
    that predates the content record is on no known build."""
    data = meta.get("data") or {}
    return data.get("content") == build and data.get("content_at_resume", build) == build
