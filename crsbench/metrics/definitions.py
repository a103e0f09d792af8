"""What each metric is: its definition, its direction, its task and the level it is computed at.

The trainer (early stopping), `crsbench compare` (significance tests) and `crsbench list` ask
these objects instead of keeping their own lists. A metric key in results is "<view>/<name>"
(recommendation, e.g. "all/recall@10") or "gen/<name>" (generation), with "@n" or "@k" a cut-off.
Levels: "instance" = a mean over instances or responses of a per-instance outcome (paired
permutation test); "corpus" = computed on the whole set of responses (paired bootstrap);
"count" = the number scored, never tested.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from crsbench.errors import ConfigError

REC, GEN = "rec", "gen"


@dataclass(frozen=True)
class Metric:
    name: str                 # the family, e.g. "recall@k"
    definition: str
    higher_is_better: bool
    task: str                 # REC or GEN
    level: str                # "instance", "corpus" or "count"


METRICS: tuple[Metric, ...] = (
    Metric("count", "number of instances scored in a view (or responses, for gen/count)", True, REC, "count"),
    Metric("recall@k", "share of (turn, target item) instances whose target ranks in the top k (= Hit@k); "
           "ties with the target count against it", True, REC, "instance"),
    Metric("mrr@k", "mean 1/rank of the target, 0 beyond rank k", True, REC, "instance"),
    Metric("ndcg@k", "mean 1/log2(rank+1) of the target, 0 beyond rank k (one relevant item)", True, REC,
           "instance"),
    Metric("dist@n", "distinct word n-grams over all responses / number of responses (KGSF), n = 2, 3, 4",
           True, GEN, "corpus"),
    Metric("dist_release@n", "dist@n as the KGSF release scores it: on every non-special token of the greedy "
           "decoding, words after the end token included (greedy only)", True, GEN, "corpus"),
    Metric("dist_ratio@n", "distinct word n-grams / all word n-grams of the responses, n = 2, 3, 4", True, GEN,
           "corpus"),
    Metric("item_ratio", "movie mentions (@<movieId> tokens) in generated responses / number of responses "
           "(NTRD)", True, GEN, "instance"),
    Metric("item_share", "share of generated responses that mention at least one movie", True, GEN, "instance"),
    Metric("item_distinct", "different movies mentioned per generated response (repeats count once)", True, GEN,
           "instance"),
    Metric("bleu@n", "mean sentence-level cumulative BLEU-n against the gold response (nltk smoothing 1), "
           "n = 1..4", True, GEN, "instance"),
    Metric("ppl", "exp(summed NLL of the gold response tokens / their number); lower is better", False, GEN,
           "corpus"),
    Metric("ppl_other_context", "ppl of the same gold responses, each given another sample's context (a seeded "
           "random pairing): the control of context_gain", False, GEN, "corpus"),
    Metric("context_gain", "ppl_other_context / ppl: how much a response's own context helps the decoder "
           "(1 = the context is ignored); logged per conversation epoch", True, GEN, "corpus"),
)
_BY_FAMILY = {m.name: m for m in METRICS}
_CUTOFF = re.compile(r"^(?P<base>[a-z_]+)@(?P<k>\d+)$")


def parse(key: str) -> tuple[Metric, int | None]:
    """The metric of a key such as "recall@10", "all/recall@10" or "gen/ppl", and its cut-off."""
    name = key.rsplit("/", 1)[-1]
    match = _CUTOFF.match(name)
    if match:
        base = match.group("base")
        family = next((f for f in (f"{base}@k", f"{base}@n") if f in _BY_FAMILY), None)
        if family is not None:
            return _BY_FAMILY[family], int(match.group("k"))
    elif name in _BY_FAMILY:
        return _BY_FAMILY[name], None
    known = ", ".join(m.name for m in METRICS)
    raise ConfigError(f"unknown metric '{key}'", hint=f"metrics are {known} (with k or n a number)")


def metric(key: str) -> Metric:
    """The metric of a result key (see `parse`)."""
    return parse(key)[0]


def result_key(name: str, metrics: dict[str, float]) -> str | None:
    """Where a metric named without its view ("recall@50", "ppl") is among validation results:
    recommendation metrics in the `all` view, generation metrics under "gen/"."""
    if name in metrics:
        return name
    view = "all" if metric(name).task == REC else "gen"
    return f"{view}/{name}" if f"{view}/{name}" in metrics else None
