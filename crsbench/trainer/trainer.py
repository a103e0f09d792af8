"""The generic trainer: every model's stages run through this one loop.

Per stage: optimiser (and per-epoch learning-rate decay) over the stage's parameters only (the
rest frozen), a deterministic order of the training instances per (seed, stage, epoch), the random
generators reseeded per (seed, stage), so that a stage trains the same whether or not earlier stages
ran in this process, gradient clipping, mixed precision on CUDA,
validation and early stopping with restore-best, an atomic checkpoint after every epoch and every
`train.checkpoint_minutes` within one (weights, optimiser, scaler, RNG states, progress, the position
in the epoch), a checkpoint and a stop after the current step when SIGINT/SIGTERM arrives
(crsbench/interrupt.py), TensorBoard curves and history.jsonl (one line per epoch, with the
generation metrics of eval.generation_every_epoch). `fit(resume=True)` continues from the last
checkpoint, inside an epoch if it was written there, and ends with the same weights as an
uninterrupted run.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

import torch
from loguru import logger
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from crsbench.atomic import atomic_write
from crsbench.config.loader import stage_settings
from crsbench.datasets.instances import RecInstance, Sample, SplitInstances
from crsbench.errors import ConfigError, TrainingError
from crsbench.metrics.definitions import metric, result_key
from crsbench.models.base import CONV, REC, CRSModel, Stage, move_to, selected_tasks
from crsbench.run_dir import RunDir
import crsbench.trainer.checkpoint as checkpoint
from crsbench.interrupt import StopRequest
from crsbench.trainer.seeding import seed_everything

STAGE_RNG_OFFSET = 5_003     # global generators: apart from the batch-order seeds (stage seed + epoch)


def _optimizer(name: str, params: list, lr: float, weight_decay: float, amsgrad: bool = False) -> torch.optim.Optimizer:
    if name == "adam":
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, amsgrad=amsgrad, fused=fused or None)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, amsgrad=amsgrad)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"train.optimizer: unknown optimizer '{name}'", hint="use adam, adamw or sgd")


def early_stop_value(expression: str, metrics: dict[str, float]) -> tuple[float, bool]:
    """(value, higher_is_better) of e.g. "recall@1+recall@50" (valid `all` view) or "ppl"; each
    metric says its own direction (crsbench/metrics/definitions.py)."""
    terms = [t.strip() for t in expression.split("+") if t.strip()]
    try:
        directions = {metric(t).higher_is_better for t in terms}
    except ConfigError as exc:
        raise ConfigError(f"early_stop_metric: {exc.message}", hint=exc.hint) from None
    if len(directions) != 1:
        raise ConfigError(f"early_stop_metric '{expression}' mixes lower- and higher-is-better metrics",
                          hint="use e.g. recall@1+recall@50, or ppl alone")
    total = 0.0
    for term in terms:
        key = result_key(term, metrics)
        if key is None:
            raise ConfigError(f"early_stop_metric: '{term}' is not among the validation metrics",
                              hint=f"available: {', '.join(sorted(metrics))}")
        total += metrics[key]
    return total, directions.pop()


BUCKET_POOL = 50         # batches whose instances are sorted by length together


def instance_length(instance: RecInstance | Sample) -> int:
    """Context length in tokens: what padding, and so the encoder's cost, depends on."""
    sample = instance.sample if isinstance(instance, RecInstance) else instance
    return sum(len(turn.tokens) for turn in sample.context)


def batch_order(num: int, size: int, lengths: list[int] | None, generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches of instance indices, a deterministic function of the generator's seed.

    Without lengths: a random permutation cut into batches. With lengths: the permutation is cut
    into pools of BUCKET_POOL batches, each pool sorted by length before it is cut into batches (so
    a batch pads little), and the batches are shuffled again (so lengths do not follow a schedule).
    """
    order = torch.randperm(num, generator=generator).tolist()
    if lengths is None:
        return [order[i:i + size] for i in range(0, num, size)]
    batches = []
    for start in range(0, num, size * BUCKET_POOL):
        pool = sorted(order[start:start + size * BUCKET_POOL], key=lambda i: lengths[i])
        batches += [pool[i:i + size] for i in range(0, len(pool), size)]
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


class Trainer:
    """Runs `model.fit` on the train split, then each declared stage, with checkpoints in the run dir."""

    def __init__(self, model: CRSModel, instances: dict[str, SplitInstances], config: dict,
                 run_dir: RunDir | Path, stop: StopRequest | None = None) -> None:
        self.model, self.instances, self.config = model, instances, config
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
        self.stop = stop or StopRequest()
        self.device = model.device
        self.seed = int(config["run"]["seed"])
        self._writer: SummaryWriter | None = None
        self._step = 0
        self._last_optimizer: torch.optim.Optimizer | None = None
        # a stage's randomness is keyed by its place among *all* declared stages, so that e.g. a
        # run.tasks=[conv] run on a recommender run trains exactly like a full run's conversation stage
        self._positions = {stage.name: place for place, stage in enumerate(model.stages())}
        tasks = selected_tasks(model, config)
        self.stages = [stage for stage in model.stages() if stage.task in tasks]
        for stage in self.stages:
            epochs = stage_settings(config, stage.name)["epochs"]
            if epochs < 1 and not stage.optional:
                raise ConfigError(f"stages.{stage.name}.epochs is {epochs}: stage '{stage.name}' trains what the "
                                  "run is scored on, so it needs at least 1 epoch",
                                  hint=f"--set stages.{stage.name}.epochs=1 or more (only optional stages, such "
                                       "as pre-training, may have 0), or leave the task out with run.tasks")

    @property
    def writer(self) -> SummaryWriter:
        if self._writer is None:
            self._writer = SummaryWriter(str(self.run.tensorboard))
        return self._writer

    # --- public -----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        """Train every stage; returns per-stage summaries. Final weights go to the run's model.pt."""
        self.model.fit(self.instances["train"])
        state = self._load_progress() if resume else None
        summaries: list[dict] = state["summaries"] if state else []
        first_stage = state["stage_index"] if state else 0
        for index in range(first_stage, len(self.stages)):
            resume_state = state if state and state["stage_index"] == index and not state["stage_done"] else None
            summaries.append(self._run_stage(index, self.stages[index], resume_state, summaries))
            state = None
        atomic_write(self.run.weights, lambda h: torch.save(self.model.state_dict(), h), mode="wb")
        if self._writer is not None:
            self._writer.close()
        return {"stages": summaries}

    # --- one stage --------------------------------------------------------------------------
    def _training_instances(self, stage: Stage) -> list:
        train = self.instances["train"]
        if stage.instances is not None:
            return stage.instances(train)
        if stage.task == REC:
            return train.rec
        if stage.task == CONV:
            return train.samples
        raise ConfigError(f"stage '{stage.name}': unknown task '{stage.task}'", hint="use REC or CONV")

    def _carry_optimizer_state(self, stage: Stage, optimizer: torch.optim.Optimizer) -> None:
        """`carry_optimizer`: the previous stage's per-parameter state (Adam's moments and step) for
        the parameters this stage also trains, as if one optimizer had run on (the KGSF release)."""
        previous = self._last_optimizer
        if previous is None:
            logger.warning(f"stage '{stage.name}': carry_optimizer is set but no earlier stage's optimizer "
                           "state is at hand (first stage, or resumed at a stage boundary); starting fresh")
            return
        carried = 0
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p in previous.state:
                    optimizer.state[p] = {k: v.clone() if torch.is_tensor(v) else v
                                          for k, v in previous.state[p].items()}
                    carried += 1
        logger.info(f"stage '{stage.name}': carried the previous stage's optimizer state for {carried} of "
                    f"{sum(len(g['params']) for g in optimizer.param_groups)} parameter tensors")

    def _run_stage(self, index: int, stage: Stage, state: dict | None, summaries: list[dict]) -> dict:
        s = stage_settings(self.config, stage.name)
        params = list(dict.fromkeys(stage.parameters()))
        trainable = {id(p) for p in params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in trainable)
        optimizer = _optimizer(s["optimizer"], params, s["lr"], s["weight_decay"], s["amsgrad"]) if params else None
        if optimizer is not None and s["carry_optimizer"] and state is None:
            self._carry_optimizer_state(stage, optimizer)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, s["lr_gamma"]) if optimizer else None
        use_amp = bool(s["amp"]) and self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        if use_amp:
            precision = lambda: torch.autocast("cuda", dtype=torch.float16)     # noqa: E731
        elif s["cpu_bf16"] and self.device.type == "cpu":          # no scaler: bfloat16 has float32's range
            precision = lambda: torch.autocast("cpu", dtype=torch.bfloat16)    # noqa: E731
        else:
            precision = nullcontext
        metric_name = s["early_stop_metric"] if stage.validate else None
        progress = {"epoch": 0, "best": None, "best_epoch": None, "bad_epochs": 0, "history": []}
        if state is not None:
            self.model.load_state_dict(state["model"])
            if optimizer is not None and state.get("optimizer"):
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            checkpoint.set_rng_state(state["rng"])
            progress = state["progress"]
            self._step = state.get("step", 0)
            within = progress.get("in_epoch")
            where = (f"in epoch {within['epoch'] + 1} after {within['batches']} batches" if within
                     else f"after epoch {progress['epoch']}")
            logger.info(f"stage '{stage.name}': resuming {where}")
        else:       # dropout etc. draw from a stream of (seed, stage), not from what ran before
            seed_everything(self._stage_seed(stage) + STAGE_RNG_OFFSET)
        instances = self._training_instances(stage)
        clock = _StageClock(s["epochs"], progress["epoch"])
        place = f"stage {index + 1}/{len(self.stages)} '{stage.name}'"
        self._heartbeat(stage, index, progress, s, metric_name)      # `crsbench runs`: in this stage now
        self.stop.training = True
        try:
            while progress["epoch"] < s["epochs"] and optimizer is not None:
                epoch = progress["epoch"]
                epoch_started = time.perf_counter()
                loss = self._train_epoch(stage, index, epoch, instances, optimizer, scheduler, scaler, s,
                                         precision, progress, summaries, clock, place)
                scheduler.step()
                entry = {"epoch": epoch + 1, "train_loss": loss}
                stop = False
                line = f"{place} epoch {epoch + 1}/{s['epochs']}: train loss {loss:.4f}"
                if stage.validate:
                    metrics = self._validate(stage)
                    entry["valid"] = {k: v for k, v in metrics.items() if not k.endswith("/count")}
                    for key, value in metrics.items():
                        self.writer.add_scalar(f"{stage.name}/valid/{key}", value, epoch + 1)
                    if metric_name:
                        value, higher = early_stop_value(metric_name, metrics)
                        entry["early_stop_value"] = value
                        better = progress["best"] is None or (value > progress["best"] if higher
                                                              else value < progress["best"])
                        if better:
                            progress.update(best=value, best_epoch=epoch + 1, bad_epochs=0)
                            checkpoint.save(self.model.state_dict(), self.run.best_checkpoint)
                        else:
                            progress["bad_epochs"] += 1
                            stop = progress["bad_epochs"] >= s["early_stop_patience"]
                        line += (f", valid {metric_name} {value:.4f} (best {progress['best']:.4f} at epoch "
                                 f"{progress['best_epoch']})")
                tested = self._test_curve(stage)
                if tested:
                    entry["test_curve"] = tested
                    for key, value in tested.items():
                        self.writer.add_scalar(f"{stage.name}/test_curve/{key}", value, epoch + 1)
                curve = self._generation_curve(stage)
                if curve:
                    entry["generation"] = curve
                    for key, value in curve.items():
                        self.writer.add_scalar(f"{stage.name}/generation/{key}", value, epoch + 1)
                    line += (f", sampled valid dist@2 {curve.get('gen/dist@2', 0):.4f} item_ratio "
                             f"{curve.get('gen/item_ratio', 0):.4f} context gain "
                             f"{curve.get('gen/context_gain', float('nan')):.3f}")
                seconds = time.perf_counter() - epoch_started
                entry["seconds"] = seconds
                self._append_history(stage, entry)
                clock.epoch_done(seconds)
                logger.info(f"{line}, {seconds:.1f} s")
                progress["history"].append(entry)
                progress["epoch"] = epoch + 1
                if stop:
                    logger.info(f"stage '{stage.name}': early stop after {s['early_stop_patience']} epochs "
                                "without improvement")
                    progress["epoch"] = s["epochs"]
                self._save_progress(index, False, optimizer, scheduler, scaler, progress, summaries)
                self._heartbeat(stage, index, progress, s, metric_name)
                self.stop.check()
        finally:
            self.stop.training = False
        if metric_name and s["restore_best"] and self.run.best_checkpoint.exists() and progress["best_epoch"]:
            self.model.load_state_dict(checkpoint.load(self.run.best_checkpoint))
            logger.info(f"stage '{stage.name}': restored the best epoch ({progress['best_epoch']})")
        for p in self.model.parameters():
            p.requires_grad_(True)
        self._last_optimizer = optimizer            # for a next stage with carry_optimizer
        summary = {"stage": stage.name, "epochs": len(progress["history"]), "best_epoch": progress["best_epoch"],
                   "best": progress["best"], "seconds": sum(h.get("seconds", 0.0) for h in progress["history"]),
                   "history": progress["history"]}
        self._save_progress(index + 1, True, None, None, scaler, progress, summaries + [summary])
        self.stop.check()
        return summary

    def _stage_seed(self, stage: Stage) -> int:
        """Base seed of a stage's random streams: the run's seed and the stage's declared place."""
        return self.seed * 1_000_003 + self._positions[stage.name] * 10_007

    def _train_epoch(self, stage: Stage, index: int, epoch: int, instances: list,
                     optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler, s: dict,
                     precision: Callable[[], ContextManager], progress: dict, summaries: list[dict],
                     clock: "_StageClock", place: str) -> float:
        """One epoch (or its rest, after a mid-epoch checkpoint); checkpoints every
        `checkpoint_minutes` and when a stop is requested. Returns the mean training loss."""
        self.model.train()
        lengths = [instance_length(x) for x in instances] if s["length_buckets"] else None
        batches = batch_order(len(instances), s["batch_size"], lengths,
                              torch.Generator().manual_seed(self._stage_seed(stage) + epoch))
        within = progress.pop("in_epoch", None)
        first = within["batches"] if within and within["epoch"] == epoch else 0
        total, count = (within["total"], within["count"]) if first else (0.0, 0)
        clock.epoch_started(len(batches), first)
        every = float(s["checkpoint_minutes"]) * 60.0
        last_checkpoint = time.perf_counter()
        bar = tqdm(total=len(batches), initial=first, desc=f"{place} epoch {epoch + 1}/{s['epochs']}",
                   leave=False, mininterval=5.0)
        for step in range(first, len(batches)):
            rows = batches[step]
            batch = move_to(self.model.collate([instances[i] for i in rows], stage.task), self.device)
            with precision():
                out = stage.loss(batch)
            terms = out if isinstance(out, dict) else {"loss": out}
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"stage '{stage.name}', epoch {epoch + 1}, step {step + 1}: the loss is {loss.item()}",
                    hint=f"lower the learning rate (--set stages.{stage.name}.lr=...) or check the data; "
                         f"the last good checkpoint is {self.run.last_checkpoint}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if s["grad_clip"] and s["grad_clip"] > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                               s["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
            total += loss.item()
            count += 1
            self._step += 1
            bar.update(1)
            if self._step % s["log_every"] == 0:
                for key, value in terms.items():
                    self.writer.add_scalar(f"{stage.name}/train/{key}", float(value.detach()), self._step)
                bar.set_postfix(loss=f"{total / count:.4f}", stage_eta=clock.eta(step + 1))
            if self.stop.signum is not None or time.perf_counter() - last_checkpoint >= every:
                progress["in_epoch"] = {"epoch": epoch, "batches": step + 1, "total": total, "count": count}
                self._save_progress(index, False, optimizer, scheduler, scaler, progress, summaries)
                progress.pop("in_epoch")
                last_checkpoint = time.perf_counter()
                self._heartbeat(stage, index, progress, s, None, batch=step + 1, batches=len(batches))
                if self.stop.signum is not None:
                    bar.close()
                    logger.info(f"checkpoint written in epoch {epoch + 1} after {step + 1} of {len(batches)} "
                                f"batches: {self.run.last_checkpoint}")
                    self.stop.check()
        bar.close()
        return total / max(count, 1)

    def _validate(self, stage: Stage) -> dict[str, float]:
        from crsbench.evaluator import evaluate_generation, evaluate_perplexity, evaluate_recommendation
        ev = self.config["eval"]
        valid = self.instances["valid"].head(ev.get("max_samples"))
        if stage.validate == REC:
            metrics, _ = evaluate_recommendation(self.model, valid, ["all"], ev["ks"], ev["batch_size"])
            return metrics
        metric = stage_settings(self.config, stage.name)["early_stop_metric"] or ""
        if metric.strip() in ("", "ppl"):     # nothing decoded selects: teacher-forced perplexity suffices
            return evaluate_perplexity(self.model, valid, ev["batch_size"])     # (curves: generation_every_epoch)
        metrics, _ = evaluate_generation(self.model, valid, ev["batch_size"], ev["max_length"], 1)
        return metrics

    def _test_curve(self, stage: Stage) -> dict[str, float]:
        """Test Recall/MRR/NDCG (all view) after a recommendation epoch (eval.test_curve), for the
        Figure 2 curve only: model selection uses the validation split, never this."""
        from crsbench.evaluator import evaluate_recommendation
        ev = self.config["eval"]
        if stage.validate != REC or not ev.get("test_curve") or "test" not in self.instances:
            return {}
        metrics, _ = evaluate_recommendation(self.model, self.instances["test"].head(ev.get("max_samples")),
                                             ["all"], ev["ks"], ev["batch_size"])
        return {k: v for k, v in metrics.items() if not k.endswith("/count")}

    def _generation_curve(self, stage: Stage) -> dict[str, float]:
        """Generation metrics of a fixed random subset of validation samples after a conversation
        epoch (eval.generation_every_epoch): for curves only, never for model selection."""
        from crsbench.evaluator import evaluate_context_use, evaluate_generation
        ev = self.config["eval"]
        n = ev.get("generation_every_epoch") or 0
        if stage.validate != CONV or n <= 0:
            return {}
        valid = self.instances["valid"].head(ev.get("max_samples")).sample(n, seed=0)
        metrics, _ = evaluate_generation(self.model, valid, ev["batch_size"], ev["max_length"], 1,
                                         ev.get("no_repeat_ngram", 0))
        if "gen/ppl" in metrics:       # the same samples with other samples' contexts (context use)
            metrics.update(evaluate_context_use(self.model, valid, ev["batch_size"], own=metrics["gen/ppl"]))
        return {k: v for k, v in metrics.items() if not k.endswith("/count")}

    def _append_history(self, stage: Stage, entry: dict) -> None:
        """history.jsonl: what `crsbench plot curves` reads (a resumed epoch replaces its line)."""
        import json
        lines = []
        if self.run.history.exists():
            lines = [json.loads(l) for l in self.run.history.read_text().splitlines() if l.strip()]
        lines = [l for l in lines if (l["stage"], l["epoch"]) != (stage.name, entry["epoch"])]
        lines.append({"stage": stage.name, **entry})
        atomic_write(self.run.history, lambda h: h.writelines(json.dumps(l) + "\n" for l in lines))

    # --- checkpoints ------------------------------------------------------------------------
    def _save_progress(self, stage_index: int, stage_done: bool, optimizer, scheduler, scaler,
                       progress: dict, summaries: list[dict]) -> None:
        checkpoint.save({"stage_index": stage_index, "stage_done": stage_done,
                         "model": self.model.state_dict(),
                         "optimizer": optimizer.state_dict() if optimizer is not None else {},
                         "scheduler": scheduler.state_dict() if scheduler is not None else {},
                         "scaler": scaler.state_dict(), "rng": checkpoint.rng_state(),
                         "progress": progress, "summaries": summaries, "step": self._step},
                        self.run.last_checkpoint)

    def _heartbeat(self, stage: Stage, index: int, progress: dict, s: dict, metric: str | None,
                   **extra) -> None:
        """Where training is, into run.json (for `crsbench runs`); skipped outside a run directory."""
        if self.run.exists():
            self.run.heartbeat(stage=stage.name, stage_index=index + 1, stages=len(self.stages),
                               epoch=progress["epoch"], epochs=s["epochs"], best=progress["best"],
                               metric=metric or s["early_stop_metric"], **extra)

    def _load_progress(self) -> dict | None:
        path = self.run.last_checkpoint
        if not path.exists():
            logger.warning(f"no checkpoint at {path}: starting from the beginning")
            return None
        state = checkpoint.load(path)
        if state["stage_done"]:                   # a stage boundary: the next stage starts fresh
            self.model.load_state_dict(state["model"])
            checkpoint.set_rng_state(state["rng"])
            self._step = state.get("step", 0)
        return state


class _StageClock:
    """Estimates the time left in a stage from the batches and epochs done in this process
    (validation included; an upper bound when early stopping ends the stage sooner)."""

    def __init__(self, epochs: int, done_epochs: int) -> None:
        self.epochs, self.done = epochs, done_epochs
        self.epoch_seconds: list[float] = []
        self.batches, self.first, self.started = 1, 0, time.perf_counter()

    def epoch_started(self, batches: int, first: int) -> None:
        self.batches, self.first, self.started = max(batches, 1), first, time.perf_counter()

    def epoch_done(self, seconds: float) -> None:
        self.epoch_seconds.append(seconds)
        self.done += 1

    def eta(self, batch: int) -> str:
        elapsed = time.perf_counter() - self.started
        per_batch = elapsed / max(batch - self.first, 1)
        this_epoch = per_batch * (self.batches - batch)
        per_epoch = (sum(self.epoch_seconds) / len(self.epoch_seconds) if self.epoch_seconds
                     else per_batch * self.batches)
        left = this_epoch + per_epoch * max(self.epochs - self.done - 1, 0)
        minutes = int(left // 60)
        return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(left % 60):02d}s"
