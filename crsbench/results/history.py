"""A run's per-epoch record (`history.jsonl`, written by the trainer): reading it, and
`crsbench history`, its per-epoch table in Markdown (what `crsbench plot curves` draws)."""
from __future__ import annotations

import json
from pathlib import Path

from crsbench.errors import ConfigError
from crsbench.run_dir import RunDir

# each default column names where it comes from: valid = the whole validation split (what selects),
# generation = the fixed validation subset of eval.generation_every_epoch, test_curve = eval.test_curve
DEFAULT_COLUMNS = ("train_loss", "valid:gen/ppl", "generation:gen/context_gain", "generation:gen/dist@2",
                   "generation:gen/dist@3", "generation:gen/dist@4", "generation:gen/item_ratio",
                   "generation:gen/bleu@2", "valid:all/recall@1", "valid:all/recall@50",
                   "test_curve:all/recall@50", "seconds")


def read_history(run_dir: str | Path) -> list[dict]:
    """The run's history.jsonl (one line per epoch of every stage). A finished run from before
    history.jsonl existed has the same per-epoch entries in metrics.json's training summary; []
    when neither is there."""
    run = RunDir(Path(run_dir))
    if run.history.exists():
        return [json.loads(line) for line in run.history.read_text().splitlines() if line.strip()]
    if not run.metrics_file.exists():
        return []
    stages = (run.read_metrics().get("training") or {}).get("stages") or []
    return [{"stage": stage.get("stage"), **entry} for stage in stages for entry in stage.get("history") or []]


def history_value(entry: dict, metric: str, part: str | None = None) -> float | None:
    """A per-epoch quantity: train_loss, seconds, or a key of the validation metrics, the generation
    curve or the test curve (e.g. gen/dist@2, all/recall@50); `part` picks one of those three."""
    if metric in ("train_loss", "seconds"):
        return entry.get(metric)
    for name in (part,) if part else ("valid", "generation", "test_curve"):
        if metric in entry.get(name, {}):
            return entry[name][metric]
    return None


def _column_value(entry: dict, column: str) -> float | None:
    """A table column's value in one epoch: "metric" or "part:metric" (see history_table)."""
    part, _, metric = column.rpartition(":")
    return history_value(entry, metric, part or None)


def history_table(run_dir: str | Path, stage: str | None = None,
                  columns: list[str] | None = None) -> str:
    """A Markdown table, one row per epoch of `stage` (all stages when None). A column is a metric,
    optionally "part:metric" with part valid, generation or test_curve (gen/ppl is in both the
    validation and the generation curve: "valid:gen/ppl" is the whole validation split's)."""
    lines = [h for h in read_history(run_dir) if stage is None or h["stage"] == stage]
    if not lines:
        raise ConfigError(f"{run_dir}: no epochs" + (f" of stage '{stage}'" if stage else "") + " in history.jsonl",
                          hint="a run writes history.jsonl after each epoch; check the run dir and --stage")
    if columns is None:
        columns = [c for c in DEFAULT_COLUMNS if any(_column_value(h, c) is not None for h in lines)]
    for column in columns:
        if all(_column_value(h, column) is None for h in lines):
            raise ConfigError(f"{run_dir}: '{column}' is in no epoch of history.jsonl",
                              hint=f"e.g. {', '.join(DEFAULT_COLUMNS[:6])}; a part: valid:gen/ppl")
    out = ["| stage | epoch | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for h in lines:
        cells = [_column_value(h, c) for c in columns]
        cells = ["" if v is None else f"{v:.1f}" if c == "seconds" else f"{v:.4g}" for c, v in zip(columns, cells)]
        out.append(f"| {h['stage']} | {h['epoch']} | " + " | ".join(cells) + " |")
    return "\n".join(out)
