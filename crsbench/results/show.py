"""`crsbench show RUN_DIR`: what produced one run's numbers, on one screen.

The run's identity and status, its provenance (code version, data version, fingerprint and
preprocessed content, the environment it trained in and any it resumed in), the settings in which
it differs from today's defaults for its model, dataset and protocol, each stage's training summary,
and its headline test metrics. Everything is read from the run directory's own files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from crsbench.config.loader import LOCATION_SETTINGS
from crsbench.results.fixed_defects import defects_of
from crsbench.run_dir import RunDir, shown_status

# not shown as changed settings: where things are, and what the header already says
_NOT_SHOWN = frozenset(LOCATION_SETTINGS) | {"run.seed", "run.tag", "run.init_from"}
_HEADLINE = ("all/recall@1", "all/recall@10", "all/recall@50", "cold_start/recall@50",
             "gen/dist@2", "gen/dist@3", "gen/dist@4", "gen/item_ratio", "gen/bleu@2", "gen/ppl")


def flatten(config: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested settings as (dotted key, value) pairs."""
    for key, value in config.items():
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


NOT_A_SETTING = "not a setting today"


def changed_settings(config: dict, defaults: dict) -> list[tuple[str, Any, Any]]:
    """(key, default, value) of every setting that differs from the defaults (locations and the header's fields left out);
    a key unknown today has the default NOT_A_SETTING."""
    known = dict(flatten(defaults))

    def default(key: str) -> Any:
        parts = key.split(".")
        if key not in known and parts[0] == "stages" and len(parts) == 3:     # a stage's own train.<key>
            return known.get(f"train.{parts[2]}", NOT_A_SETTING)
        return known.get(key, NOT_A_SETTING)
    return [(key, default(key), value) for key, value in flatten(config)
            if key not in _NOT_SHOWN and default(key) != value]


def _short(value: Any, digits: int = 10) -> str:
    return str(value)[:digits] if value else "not recorded"


def _environment(env: dict | None) -> str:
    if not env:
        return "not recorded"
    return (f"torch {env.get('torch')}, python {env.get('python')}, {env.get('device')} "
            f"({env.get('device_name')}), {env.get('threads')} thread(s)")


def describe_run(run_dir: str | Path) -> str:
    """The run's provenance, changed settings, training and headline metrics as Markdown-ish text."""
    from crsbench.runner import prepare_config
    run = RunDir(Path(run_dir))
    meta, results = run.read_meta(), run.read_metrics()
    config = run.read_config()
    data = meta.get("data") or {}
    lines = [f"# {meta.get('run_id', run.run_id())}",
             f"model {meta['model']}, dataset {meta['dataset']}, tag '{meta.get('tag') or ''}', "
             f"seed {meta.get('seed')}, protocol {meta.get('protocol', 'crsbench')}, status {shown_status(meta)}",
             f"started {meta.get('started')}" + (f", resumed {meta['resumed']}" if meta.get("resumed") else "")
             + (f", finished {meta['finished']}" if meta.get("finished") else ""),
             "", "## Provenance",
             f"- code version: {results.get('code_version') or meta.get('code_version', 'not recorded')}",
             f"- data: files {_short(data.get('files'))}, fingerprint {_short(data.get('fingerprint'))}, "
             f"preprocessed content {_short(data.get('content'))}, "
             f"{data.get('train_conversations', '?')} training conversations"]
    if data.get("content_at_resume"):
        lines.append(f"- resumed on another preprocessing build: content {_short(data['content_at_resume'])}")
    lines.append(f"- environment: {_environment(meta.get('environment'))}")
    for env in meta.get("resume_environments", []):
        lines.append(f"- resumed {env.get('at')} in: {_environment(env)}")
    if config["run"].get("init_from"):
        lines.append(f"- started from the weights of: {config['run']['init_from']}")
    for defect in defects_of(meta, config):
        lines.append(f"- **made before the fix of {defect.name}** ({defect.commit[:12]}): {defect.summary}; "
                     "its numbers may differ from what this code gives (a sweep re-runs it)")

    defaults, _ = prepare_config(meta["model"], meta["dataset"], protocol=meta.get("protocol"))
    changed = changed_settings(config, defaults)
    lines += ["", f"## Settings that differ from the defaults ({meta['model']} on {meta['dataset']}, "
                  f"protocol {meta.get('protocol', 'crsbench')})"]
    lines += [f"- {key}: {value!r} ({NOT_A_SETTING if default is NOT_A_SETTING else f'default {default!r}'})"
              for key, default, value in changed] or ["- none"]

    stages = (results.get("training") or {}).get("stages") or []
    if stages:
        lines += ["", "## Training"]
        for stage in stages:
            best = (f", best epoch {stage['best_epoch']} ({stage['best']:.4f})"
                    if stage.get("best_epoch") is not None and stage.get("best") is not None else ", last epoch kept")
            lines.append(f"- {stage['stage']}: {stage.get('epochs')} epoch(s){best}, "
                         f"{(stage.get('seconds') or 0) / 60:.1f} min")
    metrics = results.get("metrics") or {}
    shown = [(k, metrics[f"test/{k}"]) for k in _HEADLINE if f"test/{k}" in metrics]
    if shown:
        lines += ["", "## Test (headline; metrics.json has all)"]
        lines += [f"- {key}: {value:.4f}" for key, value in shown]
    return "\n".join(lines)
