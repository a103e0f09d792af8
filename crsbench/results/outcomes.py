"""Per-instance outcomes of one run on one split, kept compactly beside its metrics
(`outcomes_<split>.npz`, no pickles), so significance tests pair two runs instance by instance
without scoring them again.

Recommendation: one entry per (sample, target) instance: its key "conv_id|turn|target", the
target's rank and the views it belongs to. Generation: one entry per sample: its key
"conv_id|turn", the per-response BLEU-1..4, mentioned items, the response's gold-token NLL and
token count (when the model scores responses), and the response tokens (for Dist-n).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from crsbench.atomic import atomic_write_bytes
from crsbench.datasets.text import is_mention
from crsbench.errors import DataError


@dataclass
class RecOutcomes:
    keys: np.ndarray                       # str [n]
    ranks: np.ndarray                      # int64 [n], 1-based
    views: dict[str, np.ndarray]           # view -> bool [n]


@dataclass
class GenOutcomes:
    keys: np.ndarray                       # str [n]
    scores: dict[str, np.ndarray]          # "bleu@1".."bleu@4", "items", "item_share", "item_distinct",
                                           # "nll", "tokens" -> float64 [n]
    responses: list[list[str]]             # cut response tokens
    release: list[list[str]] | None = None  # the release's view (greedy; see evaluator), if scored


@dataclass
class Outcomes:
    rec: RecOutcomes | None = None
    gen: GenOutcomes | None = None
    extra: dict = field(default_factory=dict)


def rec_key(conv_id: str, turn_index: int, target: int) -> str:
    return f"{conv_id}|{turn_index}|{target}"


def gen_key(conv_id: str, turn_index: int) -> str:
    return f"{conv_id}|{turn_index}"


def from_records(rec_records: Sequence[dict], gen_records: Sequence[dict], views: Sequence[str]) -> Outcomes:
    """Outcomes from the evaluator's per-instance records (crsbench/evaluator.py)."""
    out = Outcomes()
    if rec_records:
        out.rec = RecOutcomes(
            np.array([rec_key(r["conv_id"], r["turn_index"], r["target"]) for r in rec_records]),
            np.array([r["rank"] for r in rec_records], dtype=np.int64),
            {v: np.array([v in r["views"] for r in rec_records], dtype=bool) for v in views})
    if gen_records:
        names = [k for k in ("bleu@1", "bleu@2", "bleu@3", "bleu@4", "nll", "tokens") if k in gen_records[0]]
        scores = {k: np.array([r[k] for r in gen_records], dtype=np.float64) for k in names}
        responses = [r["generated_tokens"].split() for r in gen_records]
        mentions = [[t for t in tokens if is_mention(t)] for tokens in responses]     # as item_ratio counts
        scores["items"] = np.array([len(m) for m in mentions], dtype=np.float64)
        scores["item_share"] = np.array([bool(m) for m in mentions], dtype=np.float64)
        scores["item_distinct"] = np.array([len(set(m)) for m in mentions], dtype=np.float64)
        release = ([r["generated_release"].split() for r in gen_records]
                   if "generated_release" in gen_records[0] else None)
        out.gen = GenOutcomes(np.array([gen_key(r["conv_id"], r["turn_index"]) for r in gen_records]), scores,
                              responses, release)
    return out


def write_outcomes(path: str | Path, outcomes: Outcomes) -> None:
    """Save (atomically, compressed, plain arrays only)."""
    arrays: dict[str, np.ndarray] = {}
    if outcomes.rec is not None:
        arrays["rec_keys"] = outcomes.rec.keys.astype(str)
        arrays["rec_ranks"] = outcomes.rec.ranks
        for view, mask in outcomes.rec.views.items():
            arrays[f"rec_view_{view}"] = mask
    if outcomes.gen is not None:
        arrays["gen_keys"] = outcomes.gen.keys.astype(str)
        for name, values in outcomes.gen.scores.items():
            arrays[f"gen_score_{name}"] = values
        for name, responses in (("response", outcomes.gen.responses), ("release", outcomes.gen.release)):
            if responses is None:
                continue
            lengths = np.array([len(r) for r in responses], dtype=np.int64)
            arrays[f"gen_{name}_lengths"] = lengths
            arrays[f"gen_{name}_tokens"] = np.array([t for r in responses for t in r] or [""],
                                                    dtype=str)[:int(lengths.sum())]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_outcomes(path: str | Path) -> Outcomes:
    """Load what write_outcomes saved; a damaged file is a DataError naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no per-instance outcomes", hint=f"score the run again: crsbench evaluate "
                                                                  f"--run {path.parent}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable outcomes file ({exc})",
                        hint=f"score the run again: crsbench evaluate --run {path.parent}") from None
    out = Outcomes()
    if "rec_keys" in arrays:
        views = {k[len("rec_view_"):]: v for k, v in arrays.items() if k.startswith("rec_view_")}
        out.rec = RecOutcomes(arrays["rec_keys"], arrays["rec_ranks"], views)
    if "gen_keys" in arrays:
        scores = {k[len("gen_score_"):]: v for k, v in arrays.items() if k.startswith("gen_score_")}
        def token_lists(name: str) -> list[list[str]] | None:
            if f"gen_{name}_lengths" not in arrays:
                return None
            lengths, tokens = arrays[f"gen_{name}_lengths"], arrays[f"gen_{name}_tokens"].tolist()
            ends = np.cumsum(lengths)
            return [tokens[e - n:e] for n, e in zip(lengths.tolist(), ends.tolist())]
        out.gen = GenOutcomes(arrays["gen_keys"], scores, token_lists("response"), token_lists("release"))
    return out
