"""The interface every model implements: built-in, in `baselines/`, or in a third-party package.

A model declares *what* to train (its stages, their losses and parameters) and *how* to batch
its inputs; the generic trainer (crsbench/trainer) decides *when*: order, epochs, optimisation,
checkpoints, early stopping. No model has a training loop of its own.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence

import torch
from torch import nn

from crsbench.errors import ConfigError
from crsbench.datasets.instances import RecInstance, Sample, SplitInstances
from crsbench.datasets.types import DatasetBundle
from crsbench.models.decoding import DecodeState, decode

REC = "rec"       # training/evaluation on RecInstance lists (one target item each)
CONV = "conv"     # training/evaluation on Sample lists (the response is the target)


@dataclass
class Stage:
    """One training stage, e.g. KGSF's MIM pre-training, recommendation, conversation.

    `name` is the key of its settings under `stages:` in the config (epochs, lr, early stopping...).
    `task` says which training instances it iterates over (REC or CONV).
    `loss(batch)` returns a scalar tensor, or a dict with key "loss" plus extra terms to log.
    `parameters()` yields the parameters this stage trains; everything else stays frozen.
    `validate` names the evaluation run on the valid split after each epoch (REC, CONV or None).
    `optional`: the stage may be given 0 epochs (e.g. pre-training); every other stage needs >= 1.
    `instances(split)`: the training instances, when not the task's own (e.g. KGSF's `rec_turns:
    all` adds the recommender turns without a target); None: REC -> split.rec, CONV -> split.samples.
    """

    name: str
    task: str
    loss: Callable[[Any], torch.Tensor | dict[str, torch.Tensor]]
    parameters: Callable[[], Iterable[nn.Parameter]]
    validate: str | None = None
    optional: bool = False
    instances: Callable[[SplitInstances], list] | None = None


class CRSModel(nn.Module):
    """Base class of every conversational recommender model."""

    #: Path of the model's YAML defaults (keys under `model:` and `stages:`), or None.
    config_file: ClassVar[Path | None] = None
    #: What the model can be evaluated on: REC, CONV or both.
    tasks: ClassVar[tuple[str, ...]] = (REC,)

    #: Submodules whose weights `encode_knowledge` reads (they key the frozen-knowledge cache).
    knowledge_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict, data: DatasetBundle) -> None:
        super().__init__()
        self.config = config          # the `model:` section of the resolved config
        self.data = data
        self._knowledge_scope: Any = None                  # set inside inference()
        self._knowledge_frozen: tuple[tuple, Any] | None = None

    # --- training -------------------------------------------------------------------------
    def fit(self, train: SplitInstances) -> None:
        """Collect statistics from the train split before any stage runs (non-learned models)."""

    def stages(self) -> list[Stage]:
        """The training stages in order. A model without learned parameters returns []."""
        return []

    # --- batching -------------------------------------------------------------------------
    def collate(self, instances: Sequence[RecInstance] | Sequence[Sample], task: str) -> Any:
        """Turn a list of instances into the model's own batch (tensors on CPU)."""
        raise NotImplementedError(f"{type(self).__name__} does not batch task '{task}'")

    # --- inference ------------------------------------------------------------------------
    @contextmanager
    def inference(self) -> Iterator[None]:
        """Evaluation scope (weights fixed): `encode_knowledge()` runs once on entry and `knowledge()`
        returns that result until the scope ends, instead of re-encoding per batch."""
        self._knowledge_scope = self.encode_knowledge()
        try:
            yield
        finally:
            self._knowledge_scope = None

    def encode_knowledge(self) -> Any:
        """Input-independent encodings, such as knowledge-graph node representations (None: none)."""
        return None

    def knowledge(self, frozen: bool = False) -> Any:
        """`encode_knowledge()`, reused where it cannot have changed: inside `inference()`, or, with
        `frozen=True` (a stage that does not train `knowledge_modules`), computed without gradients
        and reused until one of those modules' weights changes (tensor version counters)."""
        if self._knowledge_scope is not None:
            return self._knowledge_scope
        if not frozen:
            return self.encode_knowledge()
        params = [p for name in self.knowledge_modules for p in getattr(self, name).parameters()]
        key = tuple((id(p), p._version, p.device) for p in params)
        if self._knowledge_frozen is None or self._knowledge_frozen[0] != key:
            # float32 under CPU autocast too: the cache outlives the training step (validation, decoding)
            with torch.no_grad(), torch.autocast("cpu", enabled=False):
                self._knowledge_frozen = (key, self.encode_knowledge())
        return self._knowledge_frozen[1]

    def recommend(self, batch: Any) -> torch.Tensor:
        """Scores [batch, num_items] over `data.items` for each instance of a REC batch."""
        raise NotImplementedError(f"{type(self).__name__} does not recommend")

    def attention(self, batch: Any) -> dict[str, Any]:
        """What the recommender attends to for each instance of a REC batch (`crsbench explain`):
        side name -> (ids [B, L] of the batch, weights [B, L]) with the side's kind ("words" or
        "entities") as its first word, and optionally "gate" -> [B] (the share of the first side)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its attention")

    def generate(self, batch: Any, max_length: int, beam_size: int = 1, no_repeat_ngram: int = 0,
                 full: bool = False) -> list[list[str]]:
        """Response tokens (cut at the end token) for each sample of a CONV batch.

        The default decodes greedily or with beam search (crsbench/models/decoding.py) through
        `decode_start` / `decode_step`; a model that implements those two gets it for free.
        """
        if type(self).decode_step is CRSModel.decode_step:
            raise NotImplementedError(f"{type(self).__name__} does not generate responses")
        state, size = self.decode_start(batch)
        vocab = self.data.vocab
        ids = decode(self.decode_step, state, size, vocab.START_ID, vocab.END_ID, max_length, beam_size,
                     self.device, no_repeat_ngram, full)
        tokens = self.data.vocab.tokens
        return [[tokens[i] for i in row] for row in ids]

    def decode_start(self, batch: Any) -> tuple[DecodeState, int]:
        """The decoding state after reading a CONV batch's context, and the batch size."""
        raise NotImplementedError(f"{type(self).__name__} does not decode")

    def decode_step(self, last_tokens: torch.Tensor, state: DecodeState) -> tuple[torch.Tensor, DecodeState]:
        """Log-probabilities [N, vocab] of the next token given the newest tokens [N, 1]."""
        raise NotImplementedError(f"{type(self).__name__} does not decode")

    def response_nll(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample of a CONV batch: summed negative log-likelihood of the gold response tokens
        (end token included, padding excluded) and the number of those tokens. Used for perplexity."""
        raise NotImplementedError(f"{type(self).__name__} does not score responses")

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")


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


def move_to(obj: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts/lists/tuples to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device) for v in obj)
    return obj
