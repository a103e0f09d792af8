"""One run end to end: config -> data -> model -> trainer -> evaluation -> run dir -> results index.

`run_experiment` is what `crsbench run` calls; `evaluate_run` re-scores a saved run without training.
A run's status in run.json is `running` until it ends as `finished`, `failed` (with the error) or
`interrupted` (SIGINT/SIGTERM: a checkpoint is written first; `--resume` continues it).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from loguru import logger

from crsbench.atomic import atomic_write_json
from crsbench.config.loader import (DEFAULT_PROTOCOL, check_ranges, protocol_layer, resolve_with_sources,
                                    save_config)
from crsbench.datasets.loader import LoadedDataset, load_dataset
from crsbench.environment import changed, environment
from crsbench.errors import ConfigError, DataError
from crsbench.models.base import CONV, REC, CRSModel, selected_tasks
from crsbench.registry import get_dataset, get_model
from crsbench.results.outcomes import from_records, write_outcomes
from crsbench.results.fixed_defects import fixes_in_this_code
from crsbench.results.store import code_version, record_finished
from crsbench.run_dir import FAILED, FINISHED, INTERRUPTED, RUNNING, RunDir, now, process_identity
from crsbench.interrupt import RunInterrupted, StopRequest

if TYPE_CHECKING:
    import torch


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    metrics: dict[str, float]


def prepare_config(model_name: str | None, dataset_name: str | None, config_file: str | None = None,
                   overrides: Sequence[str] = (), data_dir: str | None = None, seed: int | None = None,
                   protocol: str | None = None) -> tuple[dict, dict[str, str]]:
    """The resolved, range-checked config of a new run under a protocol (default crsbench's) and the
    layer each setting came from."""
    if not model_name or not dataset_name:
        raise ConfigError("both --model and --dataset are needed", hint="see `crsbench list`")
    overrides = list(overrides)
    if seed is not None:
        overrides.append(f"run.seed={seed}")
    if data_dir is not None:
        overrides.append(f"data.dir={data_dir}")
    dataset = get_dataset(dataset_name)
    config, sources = resolve_with_sources(get_model(model_name), dataset, config_file, overrides,
                                           protocol_layer(protocol))
    check_ranges(config, dataset.splits, sources)
    return config, sources


def _evaluate(model: CRSModel, data: LoadedDataset, config: dict, run: RunDir,
              dump: bool) -> dict[str, float]:
    """Score `model` on every configured split with the shared protocol; keys are "split/view/metric".
    Per-instance outcomes (for significance tests) are kept in the run dir for every split."""
    from crsbench.evaluator import evaluate_generation, evaluate_recommendation, write_predictions
    ev = config["eval"]
    tasks = selected_tasks(model, config)
    metrics: dict[str, float] = {}
    for split in ev["splits"]:
        instances = data.instances[split].head(ev.get("max_samples"))
        rec_records: list[dict] = []
        gen_records: list[dict] = []
        if REC in tasks:
            found, rec_records = evaluate_recommendation(model, instances, ev["views"], ev["ks"], ev["batch_size"])
            metrics.update({f"{split}/{k}": v for k, v in found.items()})
        if CONV in tasks:
            found, gen_records = evaluate_generation(model, instances, ev["batch_size"], ev["max_length"],
                                                     ev["beam_size"], ev.get("no_repeat_ngram", 0))
            metrics.update({f"{split}/{k}": v for k, v in found.items()})
        write_outcomes(run.outcomes(split), from_records(rec_records, gen_records, ev["views"]))
        if dump:
            write_predictions(run.predictions(split), [{"task": REC, **r} for r in rec_records] +
                              [{"task": CONV, **r} for r in gen_records])
            logger.info(f"per-instance predictions written to {run.predictions(split)}")
    return metrics


def _log_metrics(metrics: dict[str, float]) -> None:
    for key in sorted(metrics):
        if any(key.endswith(s) for s in ("recall@1", "recall@10", "recall@50", "count")) or "dist" in key:
            logger.info(f"  {key:<32} {metrics[key]:.4f}")


def _write_metrics(run: RunDir, metrics: dict, timings: dict, data: LoadedDataset, **extra) -> None:
    """metrics.json: the run's own copy of its results (the database is an index of these files)."""
    previous = run.read_metrics()
    atomic_write_json(run.metrics_file, {**previous, **extra, "metrics": metrics, "timings": timings,
                                         "code_version": code_version(), "recorded_at": now(),
                                         "eval_data": data.version.as_dict()})


def _check_same_data(meta: dict, data: LoadedDataset, run: RunDir, resuming: bool) -> None:
    recorded = (meta.get("data") or {}).get("fingerprint")
    if recorded is None or recorded == data.version.fingerprint:
        return
    message = (f"{run.path} was trained on data {recorded[:10]}, the data directory now holds "
               f"{data.version.short} (the input files or the data settings changed)")
    if resuming:
        raise DataError(message, hint="restore the data the run started on, or start a new run")
    logger.warning(message + "; the scores are recorded under the run's own data version, with the "
                   "evaluation's data version beside them")


def _data_record(run: RunDir, meta: dict, data: LoadedDataset, resuming: bool) -> dict:
    """run.json's `data`: the data version, and the preprocessed content the run started on. A resume
    keeps the start's content; one on another (the preprocessing code changed in between: say, other
    word2vec embeddings) warns and records it as `content_at_resume`."""
    current = {**data.version.as_dict(), "train_conversations": len(data.bundle.splits.get("train", []))}
    if not resuming:
        return current
    started = (meta.get("data") or {}).get("content")
    now_ = current.pop("content", "")
    if started and started != now_:
        logger.warning(f"{run.path} started on preprocessed data {started[:10]} and resumes on {now_[:10]} "
                       "(same input files and settings, other preprocessing code): the resumed model "
                       "continues on another build's vocabulary or embeddings")
    return {**current, **({"content": started} if started else {}),
            **({"content_at_resume": now_} if now_ != started else {})}


def create_run(model_name: str, dataset_name: str, config: dict, protocol: str | None = None) -> RunDir:
    """A new run directory with its resolved config and a `running` run.json."""
    root = Path(config["run"]["output_dir"]).resolve()
    run = RunDir.create(root, dataset_name, model_name, config["run"]["tag"], config["run"]["seed"])
    save_config(config, run.config_file)
    run.write_meta({"run_id": run.run_id(), "model": model_name, "dataset": dataset_name,
                    "tag": config["run"]["tag"], "seed": config["run"]["seed"],
                    "protocol": protocol or DEFAULT_PROTOCOL, "started": now(),
                    "status": RUNNING, "runs_root": str(root), "code_version": code_version(),
                    "fixes": fixes_in_this_code(), **process_identity()})
    return run


def run_experiment(model_name: str | None, dataset_name: str | None, *, config_file: str | None = None,
                   overrides: Sequence[str] = (), data_dir: str | None = None, seed: int | None = None,
                   resume: str | Path | None = None, stop: StopRequest | None = None,
                   protocol: str | None = None) -> RunResult:
    """Train (or fit) and evaluate one model on one dataset; record the run in the results database."""
    if resume is not None:
        return execute_run(RunDir(Path(resume)), resuming=True, stop=stop)
    config, _ = prepare_config(model_name, dataset_name, config_file, overrides, data_dir, seed, protocol)
    return execute_run(create_run(model_name, dataset_name, config, protocol), resuming=False, stop=stop)


def execute_run(run: RunDir, resuming: bool, stop: StopRequest | None = None, record: bool = True) -> RunResult:
    """Train and score the run in `run` (new, or resumed from its last checkpoint), keeping run.json's
    status true whatever happens; `record=False` leaves the results index to the caller (a sweep's
    driver, the only writer of its index)."""
    started = time.perf_counter()
    stop = stop or StopRequest()
    meta = run.read_meta()
    config = run.read_config_today() if resuming else run.read_config()
    if resuming:
        if meta.get("status") == FINISHED:
            logger.info(f"{run.path} has finished already: scoring it again")
        meta = run.update_meta(status=RUNNING, resumed=now(), error=None, **process_identity())
    log_sink = logger.add(run.log, level="INFO")
    try:
        if resuming:
            logger.info(f"resuming run {meta.get('run_id', run.run_id())}")
        with stop.installed():
            return _run(run, meta, config, meta["model"], meta["dataset"], resuming, stop, started, record)
    except (RunInterrupted, KeyboardInterrupt):
        run.update_meta(status=INTERRUPTED, interrupted=now())
        logger.warning(f"run interrupted; continue it with: crsbench run --resume {run.path}")
        raise
    except Exception as exc:
        if run.read_meta().get("status") != FINISHED:     # a failed index write leaves a finished run
            run.update_meta(status=FAILED, failed=now(), error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        logger.remove(log_sink)


def _record_environment(run: RunDir, meta: dict, device: torch.device, resuming: bool) -> dict:
    """Record the environment a fresh run starts in; on resume, a changed one (with a warning: the
    continuation may not equal a run trained in one go to the last digit)."""
    current = environment(device)
    if not resuming:
        return run.update_meta(environment=current)
    recorded = meta.get("environment")
    differences = changed(recorded, current) if recorded else {}
    if recorded and not differences:
        return meta
    if differences:
        shown = ", ".join(f"{key} {was} -> {now_}" for key, (was, now_) in differences.items())
        logger.warning(f"{run.path} resumes in another environment than it started in ({shown}); the "
                       "scores may differ in the last digits from a run trained in one go")
    return run.update_meta(resume_environments=[*meta.get("resume_environments", []),
                                                {"at": now(), **current}])


def _run(run: RunDir, meta: dict, config: dict, model_name: str, dataset_name: str, resuming: bool,
         stop: StopRequest, started: float, record: bool) -> RunResult:
    from crsbench.trainer import Trainer
    from crsbench.trainer.seeding import deterministic_kernels, resolve_device, seed_everything
    from crsbench.warm_start import start_weights
    logger.info(f"run {meta['run_id']}: model={model_name} dataset={dataset_name} dir={run.path}")
    seed_everything(config["run"]["seed"])
    device = resolve_device(config["run"]["device"])
    share = os.environ.get("CRSBENCH_GPU_MEMORY_FRACTION")     # set by crsbench sweep --runs-per-gpu
    if share and device.type == "cuda":
        import torch
        torch.cuda.set_per_process_memory_fraction(float(share), device.index or 0)
    deterministic_kernels(device, config["run"]["deterministic"])
    meta = _record_environment(run, meta, device, resuming)
    t0 = time.perf_counter()
    data = load_dataset(dataset_name, config["data"])
    load_s = time.perf_counter() - t0
    _check_same_data(meta, data, run, resuming)
    meta = run.update_meta(data=_data_record(run, meta, data, resuming))
    model = get_model(model_name)(config["model"], data.bundle).to(device)
    if resuming and run.last_checkpoint.exists():
        # the checkpoint holds every tensor, the source's frozen ones included: run.init_from is not
        # read again, so a resumed run does not need its source run any more
        logger.info(f"weights come from {run.last_checkpoint}; run.init_from is not read again")
    else:
        start_weights(model, model_name, dataset_name, config)
    t0 = time.perf_counter()
    summary = Trainer(model, data.instances, config, run, stop).fit(resume=resuming)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = _evaluate(model, data, config, run, config["run"]["dump_predictions"])
    eval_s = time.perf_counter() - t0
    timings = {"data_s": load_s, "train_s": train_s, "eval_s": eval_s, "total_s": time.perf_counter() - started}
    _write_metrics(run, metrics, timings, data, training=summary)
    meta = run.update_meta(status=FINISHED, finished=now())
    logger.info(f"run {meta['run_id']} finished in {timings['total_s']:.1f} s")
    _log_metrics(metrics)
    if record:
        record_finished(run, meta)
    return RunResult(meta["run_id"], run.path, metrics)


def _load_run(run: RunDir, data_dir: str | None) -> tuple[dict, dict, LoadedDataset, CRSModel]:
    """A finished run's metadata, config, data and model with its trained weights (eval mode)."""
    from crsbench.trainer import checkpoint
    from crsbench.trainer.seeding import resolve_device, seed_everything
    meta = run.read_meta()
    if not run.weights.exists():
        raise ConfigError(f"{run.path}: no trained weights here ({RunDir.WEIGHTS}; status "
                          f"{meta.get('status', 'unknown')})",
                          hint=f"finish training first: crsbench run --resume {run.path}")
    config = run.read_config_today()
    if data_dir is not None:
        config["data"]["dir"] = data_dir
    seed_everything(config["run"]["seed"])
    data = load_dataset(meta["dataset"], config["data"])
    model = get_model(meta["model"])(config["model"], data.bundle)
    state = checkpoint.load(run.weights)
    absent = [k for k in model.state_dict() if k not in state]
    if absent:
        raise ConfigError(f"{run.weights} lacks {len(absent)} of the model's tensors (e.g. {absent[0]}): the run was "
                          "saved by an older crsbench whose model had fewer parts",
                          hint=f"re-run it; to keep what it trained, start the new run from it with "
                               f"--set run.init_from={run.path}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"{run.weights}: does not fit the model ({str(exc).splitlines()[0]})",
                        hint="the weights belong to other model settings; start the run again") from None
    model.to(resolve_device(config["run"]["device"])).eval()
    return meta, config, data, model


def load_run(run_dir: str | Path, data_dir: str | None = None) -> tuple[dict, dict, LoadedDataset, CRSModel]:
    """A finished run's run.json, config, data (with instances) and trained model (eval mode)."""
    return _load_run(RunDir(Path(run_dir)), data_dir)


def load_trained(run_dir: str | Path, data_dir: str | None = None) -> tuple[CRSModel, dict]:
    """The trained model of a finished run (eval mode) and the run's resolved config."""
    _, config, _, model = _load_run(RunDir(Path(run_dir)), data_dir)
    return model, config


def evaluate_run(run_dir: str | Path, *, dump: bool = False, data_dir: str | None = None,
                 output_dir: str | Path | None = None) -> RunResult:
    """Re-score a finished run from its saved config and weights (no training) and update its
    metrics.json and the results index (of `output_dir`, else of the runs root it belongs to)."""
    run = RunDir(Path(run_dir))
    meta, config, data, model = _load_run(run, data_dir)
    _check_same_data(meta, data, run, resuming=False)
    t0 = time.perf_counter()
    metrics = _evaluate(model, data, config, run, dump)
    timings = {**run.read_metrics().get("timings", {}), "eval_s": time.perf_counter() - t0}
    _write_metrics(run, metrics, timings, data)
    record_finished(run, meta, output_dir)
    _log_metrics(metrics)
    return RunResult(meta.get("run_id", run.run_id()), run.path, metrics)
