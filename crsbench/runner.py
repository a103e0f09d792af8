"""One run end to end: config -> data -> model -> trainer -> evaluation -> results database.

`run_experiment` is what `crsbench run` calls; `evaluate_run` re-scores a saved run without training.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import torch
from loguru import logger

from crsbench.atomic import atomic_write_json
from crsbench.config.loader import load_saved_config, resolve_config, save_config
from crsbench.datasets.loader import LoadedDataset, load_dataset
from crsbench.errors import ConfigError
from crsbench.evaluator import evaluate_generation, evaluate_recommendation, write_predictions
from crsbench.models.base import CONV, REC, CRSModel
from crsbench.registry import get_dataset, get_model
from crsbench.results.store import ResultStore, code_version
from crsbench.run_files import CONFIG_FILE, METRICS_FILE, RUN_META, WEIGHTS_FILE
from crsbench.trainer import Trainer
from crsbench.trainer.seeding import resolve_device, seed_everything
from crsbench.trainer.trainer import selected_tasks
from crsbench.warm_start import start_weights



@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    metrics: dict[str, float]


def results_db(output_dir: str | Path) -> ResultStore:
    """The SQLite results database that lives beside the run directories."""
    return ResultStore(Path(output_dir) / "results.sqlite")


def _new_run_dir(output_dir: Path, model: str, dataset: str, tag: str, seed: int) -> tuple[str, Path]:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    variant = model + (("_" + re.sub(r"[^A-Za-z0-9_.-]+", "", tag.replace(" ", "_"))) if tag else "")
    base = f"{dataset}/{variant}/{stamp}-seed{seed}"
    run_id, n = base, 1
    while (output_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    (output_dir / run_id).mkdir(parents=True)
    return run_id, output_dir / run_id


def _evaluate(model: CRSModel, data: LoadedDataset, config: dict, run_dir: Path,
              dump: bool) -> dict[str, float]:
    """Score `model` on every configured split with the shared protocol; keys are "split/view/metric"."""
    ev = config["eval"]
    tasks = selected_tasks(model, config)
    metrics: dict[str, float] = {}
    for split in ev["splits"]:
        instances = data.instances[split]
        records: list[dict] = []
        if REC in tasks:
            found, recs = evaluate_recommendation(model, instances, ev["views"], ev["ks"], ev["batch_size"])
            metrics.update({f"{split}/{k}": v for k, v in found.items()})
            records += [{"task": REC, **r} for r in recs]
        if CONV in tasks:
            found, gens = evaluate_generation(model, instances, ev["batch_size"], ev["max_length"],
                                              ev["beam_size"])
            metrics.update({f"{split}/{k}": v for k, v in found.items()})
            records += [{"task": CONV, **r} for r in gens]
        if dump:
            write_predictions(run_dir / f"predictions_{split}.jsonl", records)
            logger.info(f"per-instance predictions written to {run_dir / f'predictions_{split}.jsonl'}")
    return metrics


def _record(meta: dict, config: dict, metrics: dict[str, float], timings: dict[str, float],
            run_dir: Path) -> None:
    """Store a finished run in the results database beside the run directories (the runs root is
    three levels up: <root>/<dataset>/<variant>/<run>, so a moved runs folder keeps its database)."""
    results_db(Path(run_dir).parents[2]).record_run(
        run_id=meta["run_id"], model=meta["model"], dataset=meta["dataset"], tag=config["run"]["tag"],
        seed=config["run"]["seed"], config=config, code_version=code_version(), metrics=metrics,
        timings=timings, run_dir=str(run_dir), status="finished")


def _log_metrics(metrics: dict[str, float]) -> None:
    for key in sorted(metrics):
        if any(key.endswith(s) for s in ("recall@1", "recall@10", "recall@50", "count")) or "dist" in key:
            logger.info(f"  {key:<32} {metrics[key]:.4f}")


def run_experiment(model_name: str | None, dataset_name: str | None, *, config_file: str | None = None,
                   overrides: Sequence[str] = (), data_dir: str | None = None, seed: int | None = None,
                   resume: str | Path | None = None) -> RunResult:
    """Train (or fit) and evaluate one model on one dataset; record the run in the results database."""
    started = time.perf_counter()
    if resume is not None:
        run_dir = Path(resume)
        meta_path = run_dir / RUN_META
        if not meta_path.exists():
            raise ConfigError(f"{run_dir}: not a run directory (no {RUN_META})",
                              hint="pass the directory printed by `crsbench run`, e.g. runs/redial/kgsf/...")
        meta = json.loads(meta_path.read_text())
        config = load_saved_config(run_dir / CONFIG_FILE)
        model_name, dataset_name, run_id = meta["model"], meta["dataset"], meta["run_id"]
        logger.info(f"resuming run {run_id}")
    else:
        if not model_name or not dataset_name:
            raise ConfigError("both --model and --dataset are needed", hint="see `crsbench list`")
        overrides = list(overrides)
        if seed is not None:
            overrides.append(f"run.seed={seed}")
        if data_dir is not None:
            overrides.append(f"data.dir={data_dir}")
        config = resolve_config(get_model(model_name), get_dataset(dataset_name), config_file, overrides)
        output_dir = Path(config["run"]["output_dir"])
        run_id, run_dir = _new_run_dir(output_dir, model_name, dataset_name, config["run"]["tag"],
                                       config["run"]["seed"])
        save_config(config, run_dir / CONFIG_FILE)
        meta = {"run_id": run_id, "model": model_name, "dataset": dataset_name,
                "started": datetime.now(timezone.utc).isoformat(), "status": "running"}
        atomic_write_json(run_dir / RUN_META, meta)
    log_sink = logger.add(run_dir / "log.txt", level="INFO")
    try:
        logger.info(f"run {run_id}: model={model_name} dataset={dataset_name} dir={run_dir}")
        seed_everything(config["run"]["seed"])
        device = resolve_device(config["run"]["device"])
        t0 = time.perf_counter()
        data = load_dataset(dataset_name, config["data"])
        load_s = time.perf_counter() - t0
        model = get_model(model_name)(config["model"], data.bundle).to(device)
        start_weights(model, model_name, dataset_name, config)
        t0 = time.perf_counter()
        summary = Trainer(model, data.instances, config, run_dir).fit(resume=resume is not None)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = _evaluate(model, data, config, run_dir, config["run"]["dump_predictions"])
        eval_s = time.perf_counter() - t0
        timings = {"data_s": load_s, "train_s": train_s, "eval_s": eval_s,
                   "total_s": time.perf_counter() - started}
        atomic_write_json(run_dir / METRICS_FILE, {"metrics": metrics, "timings": timings,
                                                   "training": summary})
        meta.update(status="finished", finished=datetime.now(timezone.utc).isoformat())
        atomic_write_json(run_dir / RUN_META, meta)
        _record(meta, config, metrics, timings, run_dir)
        logger.info(f"run {run_id} finished in {timings['total_s']:.1f} s")
        _log_metrics(metrics)
        return RunResult(run_id, run_dir, metrics)
    finally:
        logger.remove(log_sink)


def _fill_missing(defaults: dict, found: dict, prefix: str) -> list[str]:
    """Copy into `found` the (nested) keys of `defaults` it lacks; returns their dotted names. A run
    saved before a setting existed behaves as that setting's default (new settings keep old behaviour)."""
    out = []
    for key, value in defaults.items():
        if key not in found:
            found[key] = value
            out.append(f"{prefix}{key}")
        elif isinstance(value, dict) and isinstance(found[key], dict):
            out += _fill_missing(value, found[key], f"{prefix}{key}.")
    return out


def _load_run(run_dir: Path, data_dir: str | None) -> tuple[dict, dict, LoadedDataset, CRSModel]:
    """A finished run's metadata, config, data and model with its trained weights (eval mode)."""
    meta_path, weights = run_dir / RUN_META, run_dir / WEIGHTS_FILE
    if not meta_path.exists() or not weights.exists():
        raise ConfigError(f"{run_dir}: no finished run here (need {RUN_META} and {WEIGHTS_FILE})",
                          hint="pass a directory created by `crsbench run` that finished training")
    meta = json.loads(meta_path.read_text())
    config = load_saved_config(run_dir / CONFIG_FILE)
    missing = _fill_missing(resolve_config(get_model(meta["model"]), get_dataset(meta["dataset"])), config, "")
    if missing:
        logger.warning(f"{run_dir / CONFIG_FILE} was saved by an older crsbench; today's defaults fill "
                       f"{', '.join(missing)}")
    if data_dir is not None:
        config["data"]["dir"] = data_dir
    seed_everything(config["run"]["seed"])
    data = load_dataset(meta["dataset"], config["data"])
    model = get_model(meta["model"])(config["model"], data.bundle)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    absent = [k for k in model.state_dict() if k not in state]
    if absent:
        raise ConfigError(f"{weights} lacks {len(absent)} of the model's tensors (e.g. {absent[0]}): the run was "
                          "saved by an older crsbench whose model had fewer parts",
                          hint=f"re-run it; to keep what it trained, start the new run from it with "
                               f"--set run.init_from={run_dir}")
    model.load_state_dict(state)
    model.to(resolve_device(config["run"]["device"])).eval()
    return meta, config, data, model


def load_trained(run_dir: str | Path, data_dir: str | None = None) -> tuple[CRSModel, dict]:
    """The trained model of a finished run (eval mode) and the run's resolved config."""
    _, config, _, model = _load_run(Path(run_dir), data_dir)
    return model, config


def evaluate_run(run_dir: str | Path, *, dump: bool = False, data_dir: str | None = None) -> RunResult:
    """Re-score a finished run from its saved config and weights (no training) and update the database."""
    run_dir = Path(run_dir)
    meta, config, data, model = _load_run(run_dir, data_dir)
    t0 = time.perf_counter()
    metrics = _evaluate(model, data, config, run_dir, dump)
    previous = json.loads((run_dir / METRICS_FILE).read_text()) if (run_dir / METRICS_FILE).exists() else {}
    timings = {**previous.get("timings", {}), "eval_s": time.perf_counter() - t0}
    atomic_write_json(run_dir / METRICS_FILE, {**previous, "metrics": metrics, "timings": timings})
    _record(meta, config, metrics, timings, run_dir)
    _log_metrics(metrics)
    return RunResult(meta["run_id"], run_dir, metrics)
