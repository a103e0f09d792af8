"""The generic trainer: every model's stages run through this one loop.

Per stage: optimiser (and per-epoch learning-rate decay) over the stage's parameters only (the
rest frozen), a deterministic order of the training instances per (seed, stage, epoch), the random
generators reseeded per (seed, stage), so that a stage trains the same whether or not earlier stages
ran in this process, gradient clipping, mixed precision on CUDA,
validation and early stopping with restore-best, an atomic checkpoint after every epoch (weights,
optimiser, scaler, RNG states, progress), and TensorBoard curves. `fit(resume=True)` continues from
the last checkpoint and ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from loguru import logger
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from crsbench.atomic import atomic_write
from crsbench.config.loader import stage_settings
from crsbench.datasets.instances import RecInstance, Sample, SplitInstances
from crsbench.errors import ConfigError, TrainingError
from crsbench.models.base import CONV, REC, CRSModel, Stage, move_to
from crsbench.trainer import checkpoint
from crsbench.trainer.seeding import seed_everything

LOWER_IS_BETTER = frozenset({"ppl", "loss"})
LAST, BEST, FINAL = "last.pt", "best.pt", "model.pt"
STAGE_RNG_OFFSET = 5_003     # global generators: apart from the batch-order seeds (stage seed + epoch)


def _optimizer(name: str, params: list, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"train.optimizer: unknown optimizer '{name}'", hint="use adam, adamw or sgd")


def early_stop_value(expression: str, metrics: dict[str, float]) -> tuple[float, bool]:
    """(value, higher_is_better) of e.g. "recall@1+recall@50" (valid `all` view) or "ppl"."""
    terms = [t.strip() for t in expression.split("+") if t.strip()]
    lower = all(t.split("/")[-1] in LOWER_IS_BETTER for t in terms)
    if any(t.split("/")[-1] in LOWER_IS_BETTER for t in terms) and not lower:
        raise ConfigError(f"early_stop_metric '{expression}' mixes lower- and higher-is-better metrics",
                          hint="use e.g. recall@1+recall@50, or ppl alone")
    total = 0.0
    for term in terms:
        candidates = [term, f"all/{term}", f"gen/{term}"]
        key = next((k for k in candidates if k in metrics), None)
        if key is None:
            raise ConfigError(f"early_stop_metric: '{term}' is not among the validation metrics",
                              hint=f"available: {', '.join(sorted(metrics))}")
        total += metrics[key]
    return total, not lower


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


def selected_tasks(model: CRSModel, config: dict) -> tuple[str, ...]:
    """The model's tasks that `run.tasks` keeps (null: all): stages of other tasks are skipped and
    those tasks are not evaluated, e.g. run.tasks=[rec] for a recommendation-only KGSF run."""
    wanted = config["run"]["tasks"]
    if wanted is None:
        return tuple(model.tasks)
    unknown = [t for t in wanted if t not in model.tasks]
    if unknown or not wanted:
        raise ConfigError(f"run.tasks: {wanted!r} is not a non-empty subset of {type(model).__name__}'s "
                          f"tasks {list(model.tasks)}", hint=f"use e.g. run.tasks=[{model.tasks[0]}], or null for all")
    return tuple(t for t in model.tasks if t in wanted)


class Trainer:
    """Runs `model.fit` on the train split, then each declared stage, with checkpoints in run_dir."""

    def __init__(self, model: CRSModel, instances: dict[str, SplitInstances], config: dict,
                 run_dir: Path) -> None:
        self.model, self.instances, self.config = model, instances, config
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.device = model.device
        self.seed = int(config["run"]["seed"])
        self._writer: SummaryWriter | None = None
        self._step = 0
        # a stage's randomness is keyed by its place among *all* declared stages, so that e.g. a
        # run.tasks=[conv] run on a recommender run trains exactly like a full run's conversation stage
        self._positions = {stage.name: place for place, stage in enumerate(model.stages())}

    @property
    def writer(self) -> SummaryWriter:
        if self._writer is None:
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    # --- public -----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        """Train every stage; returns per-stage summaries. Final weights go to run_dir/model.pt."""
        self.model.fit(self.instances["train"])
        tasks = selected_tasks(self.model, self.config)
        stages = [stage for stage in self.model.stages() if stage.task in tasks]
        state = self._load_progress() if resume else None
        summaries: list[dict] = state["summaries"] if state else []
        first_stage = state["stage_index"] if state else 0
        for index in range(first_stage, len(stages)):
            resume_state = state if state and state["stage_index"] == index and not state["stage_done"] else None
            summaries.append(self._run_stage(index, stages[index], resume_state, summaries))
            state = None
        atomic_write(self.run_dir / FINAL, lambda h: torch.save(self.model.state_dict(), h), mode="wb")
        if self._writer is not None:
            self._writer.close()
        return {"stages": summaries}

    # --- one stage --------------------------------------------------------------------------
    def _training_instances(self, stage: Stage) -> list:
        train = self.instances["train"]
        if stage.task == REC:
            return train.rec
        if stage.task == CONV:
            return train.samples
        raise ConfigError(f"stage '{stage.name}': unknown task '{stage.task}'", hint="use REC or CONV")

    def _run_stage(self, index: int, stage: Stage, state: dict | None, summaries: list[dict]) -> dict:
        s = stage_settings(self.config, stage.name)
        params = list(dict.fromkeys(stage.parameters()))
        trainable = {id(p) for p in params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in trainable)
        optimizer = _optimizer(s["optimizer"], params, s["lr"], s["weight_decay"]) if params else None
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, s["lr_gamma"]) if optimizer else None
        use_amp = bool(s["amp"]) and self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
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
            logger.info(f"stage '{stage.name}': resuming after epoch {progress['epoch']}")
        else:       # dropout etc. draw from a stream of (seed, stage), not from what ran before
            seed_everything(self._stage_seed(stage) + STAGE_RNG_OFFSET)
        instances = self._training_instances(stage)
        started = time.perf_counter()
        while progress["epoch"] < s["epochs"] and optimizer is not None:
            epoch = progress["epoch"]
            loss = self._train_epoch(stage, epoch, instances, optimizer, scaler, s, use_amp)
            scheduler.step()
            entry = {"epoch": epoch + 1, "train_loss": loss}
            stop = False
            if stage.validate:
                metrics = self._validate(stage)
                entry["valid"] = {k: v for k, v in metrics.items() if not k.endswith("/count")}
                for key, value in metrics.items():
                    self.writer.add_scalar(f"{stage.name}/valid/{key}", value, epoch + 1)
                if metric_name:
                    value, higher = early_stop_value(metric_name, metrics)
                    entry["early_stop_value"] = value
                    better = progress["best"] is None or (value > progress["best"] if higher else value < progress["best"])
                    if better:
                        progress.update(best=value, best_epoch=epoch + 1, bad_epochs=0)
                        checkpoint.save(self.model.state_dict(), self.ckpt_dir / BEST)
                    else:
                        progress["bad_epochs"] += 1
                        stop = progress["bad_epochs"] >= s["early_stop_patience"]
                    logger.info(f"stage '{stage.name}' epoch {epoch + 1}: loss {loss:.4f}, valid "
                                f"{metric_name} = {value:.4f} (best {progress['best']:.4f} at epoch "
                                f"{progress['best_epoch']})")
            else:
                logger.info(f"stage '{stage.name}' epoch {epoch + 1}: loss {loss:.4f}")
            progress["history"].append(entry)
            progress["epoch"] = epoch + 1
            if stop:
                logger.info(f"stage '{stage.name}': early stop after {s['early_stop_patience']} epochs "
                            "without improvement")
                progress["epoch"] = s["epochs"]
            self._save_progress(index, False, optimizer, scheduler, scaler, progress, summaries)
        if metric_name and s["restore_best"] and (self.ckpt_dir / BEST).exists() and progress["best_epoch"]:
            self.model.load_state_dict(checkpoint.load(self.ckpt_dir / BEST))
            logger.info(f"stage '{stage.name}': restored the best epoch ({progress['best_epoch']})")
        for p in self.model.parameters():
            p.requires_grad_(True)
        summary = {"stage": stage.name, "epochs": len(progress["history"]), "best_epoch": progress["best_epoch"],
                   "best": progress["best"], "seconds": time.perf_counter() - started,
                   "history": progress["history"]}
        self._save_progress(index + 1, True, None, None, scaler, progress, summaries + [summary])
        return summary

    def _stage_seed(self, stage: Stage) -> int:
        """Base seed of a stage's random streams: the run's seed and the stage's declared place."""
        return self.seed * 1_000_003 + self._positions[stage.name] * 10_007

    def _train_epoch(self, stage: Stage, epoch: int, instances: list,
                     optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, s: dict,
                     use_amp: bool) -> float:
        self.model.train()
        lengths = [instance_length(x) for x in instances] if s["length_buckets"] else None
        batches = batch_order(len(instances), s["batch_size"], lengths,
                              torch.Generator().manual_seed(self._stage_seed(stage) + epoch))
        total, count = 0.0, 0
        bar = tqdm(batches, desc=f"{stage.name} epoch {epoch + 1}", leave=False, mininterval=5.0)
        for step, rows in enumerate(bar):
            batch = move_to(self.model.collate([instances[i] for i in rows], stage.task), self.device)
            autocast = torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()
            with autocast:
                out = stage.loss(batch)
            terms = out if isinstance(out, dict) else {"loss": out}
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"stage '{stage.name}', epoch {epoch + 1}, step {step + 1}: the loss is {loss.item()}",
                    hint=f"lower the learning rate (--set stages.{stage.name}.lr=...) or check the data; "
                         f"the last good checkpoint is {self.ckpt_dir / LAST}")
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
            if self._step % s["log_every"] == 0:
                for key, value in terms.items():
                    self.writer.add_scalar(f"{stage.name}/train/{key}", float(value.detach()), self._step)
                bar.set_postfix(loss=f"{total / count:.4f}")
        return total / max(count, 1)

    def _validate(self, stage: Stage) -> dict[str, float]:
        from crsbench.evaluator import evaluate_generation, evaluate_perplexity, evaluate_recommendation
        ev = self.config["eval"]
        valid = self.instances["valid"]
        if stage.validate == REC:
            metrics, _ = evaluate_recommendation(self.model, valid, ["all"], ev["ks"], ev["batch_size"])
            return metrics
        metric = stage_settings(self.config, stage.name)["early_stop_metric"] or ""
        if metric.strip() == "ppl":       # teacher-forced perplexity suffices: skip decoding
            return evaluate_perplexity(self.model, valid, ev["batch_size"])
        metrics, _ = evaluate_generation(self.model, valid, ev["batch_size"], ev["max_length"], 1)
        return metrics

    # --- checkpoints ------------------------------------------------------------------------
    def _save_progress(self, stage_index: int, stage_done: bool, optimizer, scheduler, scaler,
                       progress: dict, summaries: list[dict]) -> None:
        checkpoint.save({"stage_index": stage_index, "stage_done": stage_done,
                         "model": self.model.state_dict(),
                         "optimizer": optimizer.state_dict() if optimizer is not None else {},
                         "scheduler": scheduler.state_dict() if scheduler is not None else {},
                         "scaler": scaler.state_dict(), "rng": checkpoint.rng_state(),
                         "progress": progress, "summaries": summaries, "step": self._step},
                        self.ckpt_dir / LAST)

    def _load_progress(self) -> dict | None:
        path = self.ckpt_dir / LAST
        if not path.exists():
            logger.warning(f"no checkpoint at {path}: starting from the beginning")
            return None
        state = checkpoint.load(path)
        if state["stage_done"]:                   # a stage boundary: the next stage starts fresh
            self.model.load_state_dict(state["model"])
            checkpoint.set_rng_state(state["rng"])
            self._step = state.get("step", 0)
        return state
