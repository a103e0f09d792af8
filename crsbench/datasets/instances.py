"""Evaluation (and training) instances: built once per dataset and split, shared by every model.

A *sample* is a recommender turn that has earlier context. A *recommendation instance* is a
(sample, mentioned movie) pair, as in the original KGSF code. Three views select the instances
every model is scored on:

- ``all``: every instance (KGSF's protocol; targets already mentioned in the context are kept);
- ``dedup``: instances whose target is not mentioned anywhere in the context;
- ``cold_start``: instances whose context mentions no item (the paper's cold-start split).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from crsbench.datasets.types import RECOMMENDER, DatasetBundle, Turn

VIEWS = ("all", "dedup", "cold_start")


@dataclass
class Sample:
    """A recommender turn with all the turns before it."""

    sample_id: int
    conv_id: str
    turn_index: int
    context: list[Turn]            # every earlier turn, oldest first; models truncate as they need
    response: Turn
    context_items: list[int]       # items mentioned in the context, order of first mention
    context_entities: list[int]    # items and linked entities of the context, order of first mention
    context_words: list[int]       # ConceptNet words of the context, order of first mention

    @property
    def targets(self) -> list[int]:
        return self.response.items


@dataclass
class RecInstance:
    """One (sample, target item) pair; `target_index` indexes the bundle's candidate item list."""

    sample: Sample
    target: int
    target_index: int


@dataclass
class SplitInstances:
    """All samples and recommendation instances of one split, with the three protocol views."""

    split: str
    samples: list[Sample]
    rec: list[RecInstance]
    views: dict[str, list[int]] = field(default_factory=dict)   # view -> indices into `rec`

    def view(self, name: str) -> list[RecInstance]:
        return [self.rec[i] for i in self.views[name]]

    def head(self, max_samples: int | None) -> "SplitInstances":
        """The first `max_samples` samples and their recommendation instances (all when None)."""
        if max_samples is None or max_samples >= len(self.samples):
            return self
        return self.subset(self.samples[:max_samples])

    def subset(self, samples: list[Sample]) -> "SplitInstances":
        """These samples (in the given order) and their recommendation instances and views."""
        kept = {s.sample_id for s in samples}
        rows = [i for i, r in enumerate(self.rec) if r.sample.sample_id in kept]
        new_index = {old: new for new, old in enumerate(rows)}
        views = {v: [new_index[i] for i in idx if i in new_index] for v, idx in self.views.items()}
        return SplitInstances(self.split, list(samples), [self.rec[i] for i in rows], views)

    def sample(self, n: int, seed: int = 0) -> "SplitInstances":
        """A fixed random subset of `n` samples (same seed, same subset), in split order."""
        if n >= len(self.samples):
            return self
        import random
        chosen = sorted(random.Random(seed).sample(range(len(self.samples)), n))
        return self.subset([self.samples[i] for i in chosen])

    def counts(self) -> dict[str, int]:
        out = {"samples": len(self.samples)}
        out.update({f"rec_{v}": len(idx) for v, idx in self.views.items()})
        return out


def _extend_unique(seen: set[int], ordered: list[int], values: list[int]) -> None:
    for v in values:
        if v not in seen:
            seen.add(v)
            ordered.append(v)


def build_split_instances(bundle: DatasetBundle, split: str) -> SplitInstances:
    """Build the samples and the recommendation instances of `split` (deterministic)."""
    samples: list[Sample] = []
    rec: list[RecInstance] = []
    item_index = bundle.item_index
    for conv in bundle.splits[split]:
        chosen = set(conv.sample_turns) if conv.sample_turns is not None else None
        items: list[int] = []
        entities: list[int] = []
        words: list[int] = []
        seen_items: set[int] = set()
        seen_entities: set[int] = set()
        seen_words: set[int] = set()
        for t, turn in enumerate(conv.turns):
            is_sample = t > 0 and (turn.role == RECOMMENDER if chosen is None else t in chosen)
            if is_sample:
                sample = Sample(len(samples), conv.conv_id, t, conv.turns[:t], turn,
                                list(items), list(entities), list(words))
                samples.append(sample)
                for target in turn.items:
                    if target in item_index:
                        rec.append(RecInstance(sample, target, item_index[target]))
            _extend_unique(seen_items, items, turn.items)
            _extend_unique(seen_entities, entities, turn.items)
            _extend_unique(seen_entities, entities, turn.entities)
            _extend_unique(seen_words, words, turn.words)
    views = {
        "all": list(range(len(rec))),
        "dedup": [i for i, r in enumerate(rec) if r.target not in set(r.sample.context_items)],
        "cold_start": [i for i, r in enumerate(rec) if not r.sample.context_items],
    }
    return SplitInstances(split, samples, rec, views)


def build_instances(bundle: DatasetBundle) -> dict[str, SplitInstances]:
    """Instances for every split of the bundle."""
    return {split: build_split_instances(bundle, split) for split in bundle.splits}
