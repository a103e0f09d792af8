"""`crsbench runs`: every run directory under a runs root with its status, read from the run
directories themselves (not from the results index, which holds finished runs only)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from crsbench.errors import DataError
from crsbench.run_dir import FAILED, FINISHED, RunDir, find_runs, shown_status

HEADLINE = ("test/all/recall@50", "test/gen/dist@2", "test/gen/ppl")


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        a = datetime.fromisoformat(start)
        b = datetime.fromisoformat(end) if end else datetime.now(timezone.utc)
    except (TypeError, ValueError):
        return None
    return (b - a).total_seconds()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def _result(run: RunDir, meta: dict, status: str) -> str:
    """The headline test metric of a finished run, the error of a failed one, else where training is."""
    if status == FINISHED:
        metrics = run.read_metrics().get("metrics", {})
        shown = [f"{key.split('/')[-1]} {metrics[key]:.4f}" for key in HEADLINE if key in metrics]
        return ", ".join(shown[:2]) or "(no test metrics)"
    if status == FAILED:
        return (meta.get("error") or "failed")[:80]
    p = meta.get("progress") or {}
    if not p:
        return "(before training)"
    text = f"stage {p.get('stage_index')}/{p.get('stages')} {p.get('stage')}, {p.get('epoch')}/{p.get('epochs')} epochs done"
    if p.get("batch"):
        text += f" +{p['batch']}/{p['batches']} batches"
    if p.get("best") is not None:
        text += f", best {p.get('metric')} {p['best']:.4f}"
    return text


def list_runs(root: str | Path, dataset: str | None = None) -> list[dict]:
    """One row per run directory: dir, model, tag, seed, status, data version, result, duration."""
    rows = []
    for run in find_runs(Path(root), dataset):
        try:
            meta = run.read_meta()
        except DataError as exc:
            rows.append({"run": str(run.path), "model": "?", "tag": "", "seed": "?", "status": "unreadable",
                         "data": "?", "result": exc.message[:80], "duration": "?"})
            continue
        status = shown_status(meta)
        end = meta.get("finished") or meta.get("failed") or meta.get("interrupted")
        if status not in (FINISHED, FAILED) and status != "running":
            end = end or meta.get("heartbeat") or meta.get("started")
        try:
            result = _result(run, meta, status)
        except DataError as exc:
            result = exc.message[:80]
        rows.append({"run": str(run.path), "model": meta["model"], "tag": meta.get("tag", ""),
                     "seed": meta.get("seed", "?"), "status": status,
                     "data": ((meta.get("data") or {}).get("fingerprint") or "unknown")[:10],
                     "result": result, "duration": _duration(_seconds(meta.get("started"), end))})
    return rows


def format_runs(rows: list[dict]) -> str:
    """Aligned text columns."""
    header = {"run": "run dir", "model": "model", "tag": "tag", "seed": "seed", "status": "status",
              "data": "data", "duration": "duration", "result": "result"}
    columns = list(header)
    table = [header] + [{k: str(r[k]) for k in columns} for r in rows]
    widths = {k: max(len(r[k]) for r in table) for k in columns}
    return "\n".join("  ".join(r[k].ljust(widths[k]) for k in columns).rstrip() for r in table)
