"""Scores any model on the shared instances with the shared metrics: one protocol for every model.

Recommendation: every distinct context (sample) is scored ONCE over all candidate items; each of
its (sample, target) instances is then ranked against those scores (crsbench/metrics/recommendation.py)
and the metrics are reported per protocol view ("all/recall@10", "dedup/mrr@50", "<view>/count").
Generation: one response per sample, cut at the end token, scored with crsbench/metrics/generation.py;
perplexity comes from the model's NLL of the gold responses. Keys are "gen/<metric>".
"""
from __future__ import annotations

import inspect
import json
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import torch
from loguru import logger
from tqdm import tqdm

from crsbench.atomic import atomic_write
from crsbench.datasets.instances import RecInstance, Sample, SplitInstances
from crsbench.datasets.text import detokenize, is_mention, render_mentions
from crsbench.errors import ConfigError, TrainingError
from crsbench.metrics.generation import cut_response, distinct, generation_metrics, perplexity
from crsbench.metrics.recommendation import check_ks, ranking_metrics, target_ranks
from crsbench.models.base import CONV, REC, CRSModel, move_to

TOP_K_RECORDED = 10      # top items kept per prediction record


def _batches(items: list, size: int, desc: str) -> Iterator[list]:
    """Consecutive chunks of `items`, with a progress bar on a terminal."""
    for start in tqdm(range(0, len(items), size), desc=desc, leave=False, mininterval=2.0,
                      disable=not sys.stderr.isatty()):
        yield items[start:start + size]


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"eval.batch_size: {batch_size!r} is not a positive integer",
                          hint="set eval.batch_size to e.g. 128 (--set eval.batch_size=128)")


def _check_views(split: SplitInstances, views: Sequence[str]) -> None:
    unknown = [v for v in views if v not in split.views]
    if unknown:
        raise ConfigError(f"eval.views: unknown view(s) {', '.join(map(repr, unknown))}",
                          hint=f"choose among {', '.join(split.views)}")


def _score(model: CRSModel, instances: Sequence[RecInstance]) -> torch.Tensor:
    """Scores [len(instances), num_items] on the model's device, after checking their shape."""
    scores = model.recommend(move_to(model.collate(instances, REC), model.device))
    expected = (len(instances), model.data.num_items)
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != expected:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise TrainingError(f"{type(model).__name__}.recommend returned {shape}, expected {expected}",
                            hint="return one row per instance and one column per item of data.items")
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()       # half precision would create ties that are not the model's
    return scores.detach()


def _inference(model: CRSModel) -> bool:
    """Remember the training flag, switch to eval mode; the caller restores it."""
    was_training = model.training
    model.eval()
    return was_training


@torch.no_grad()
def evaluate_recommendation(model: CRSModel, split: SplitInstances, views: Sequence[str],
                            ks: Sequence[int], batch_size: int) -> tuple[dict[str, float], list[dict]]:
    """Rank every target of `split` among all candidate items; metrics per view plus records.

    Metrics: "<view>/count", "<view>/recall@k", "<view>/mrr@k", "<view>/ndcg@k". Records (one per
    instance, in `split.rec` order): sample_id, conv_id, turn_index, target, rank, top_items (the
    model's top-10 item entity ids), views (the requested views the instance belongs to).
    """
    ks = check_ks(ks)
    _check_batch_size(batch_size)
    _check_views(split, views)
    by_sample: dict[int, list[int]] = {}          # sample id -> indices into split.rec
    for i, inst in enumerate(split.rec):
        by_sample.setdefault(inst.sample.sample_id, []).append(i)
    firsts = [split.rec[rows[0]] for rows in by_sample.values()]    # one instance per distinct sample
    ranks = torch.zeros(len(split.rec), dtype=torch.long)
    top: dict[int, list[int]] = {}
    was_training = _inference(model)
    try:
        with model.inference():
            for chunk in _batches(firsts, batch_size, f"rank {split.split}"):
                scores = _score(model, chunk)
                rows = [by_sample[inst.sample.sample_id] for inst in chunk]
                # one score row per instance: row r of `scores` repeated for each target of sample r
                row_of = torch.tensor([r for r, idx in enumerate(rows) for _ in idx], device=scores.device)
                flat = [i for idx in rows for i in idx]
                targets = torch.tensor([split.rec[i].target_index for i in flat])
                ranks[flat] = target_ranks(scores.index_select(0, row_of), targets).cpu()
                best = torch.topk(scores, min(TOP_K_RECORDED, scores.shape[1]), dim=1).indices.cpu()
                for inst, row in zip(chunk, best.tolist()):
                    top[inst.sample.sample_id] = row
    finally:
        model.train(was_training)
    metrics: dict[str, float] = {}
    membership: dict[int, list[str]] = {}
    for view in views:
        idx = split.views[view]
        for key, value in ranking_metrics(ranks[idx], ks).items():
            metrics[f"{view}/{key}"] = value
        for i in idx:
            membership.setdefault(i, []).append(view)
    items, titles = model.data.items, model.data.item_titles
    records = []
    for i, inst in enumerate(split.rec):
        top_items = [items[j] for j in top[inst.sample.sample_id]]
        records.append({"sample_id": inst.sample.sample_id, "conv_id": inst.sample.conv_id,
                        "turn_index": inst.sample.turn_index, "target": inst.target,
                        "target_title": titles.get(inst.target, ""), "rank": int(ranks[i]),
                        "top_items": top_items, "top_titles": [titles.get(e, "") for e in top_items],
                        "views": membership.get(i, [])})
    logger.debug(f"ranked {len(split.rec)} instances of {len(firsts)} samples on {split.split}")
    return metrics, records


def _query(sample: Sample, first: dict[int, RecInstance]) -> RecInstance:
    """A REC instance for `sample` to ask the model's recommendation; its target is not an input."""
    return first.get(sample.sample_id) or RecInstance(sample, target=-1, target_index=-1)


@torch.no_grad()
def _generate_options(model: CRSModel, beam_size: int, no_repeat_ngram: int) -> dict:
    """The keyword options this model's generate() takes: `full` (greedy rows uncut, for the
    release's Dist-n) and `no_repeat_ngram`; a plugin with the plain signature gets neither."""
    accepted = inspect.signature(model.generate).parameters
    options = {}
    if "full" in accepted and beam_size == 1:
        options["full"] = True
    if no_repeat_ngram:
        if "no_repeat_ngram" not in accepted:
            raise ConfigError(f"eval.no_repeat_ngram: {type(model).__name__}.generate does not take it",
                              hint="set eval.no_repeat_ngram=0 for this model")
        options["no_repeat_ngram"] = no_repeat_ngram
    return options


def evaluate_generation(model: CRSModel, split: SplitInstances, batch_size: int, max_length: int,
                        beam_size: int, no_repeat_ngram: int = 0) -> tuple[dict[str, float], list[dict]]:
    """Generate a response for every sample of `split` and score them ("gen/<metric>") plus records.

    Records (one per sample): sample_id, conv_id, turn_index, context (texts of the earlier turns),
    gold, generated, generated_items, gold_items, context_items (entity ids), the response's
    bleu@1..4, its gold-token nll and tokens (when the model scores responses), recommended
    (top-10 item entity ids) when the model also recommends, and with greedy decoding
    generated_release: every non-special token of the max_length decoded, after the end token too,
    as the KGSF release's vector2sentence keeps them (its Dist-n: "dist_release@n").
    A model whose response_nll is not implemented gets no "gen/ppl" (logged, not an error).
    """
    _check_batch_size(batch_size)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(f"eval.max_length: {max_length!r} is not a positive integer",
                          hint="set eval.max_length to e.g. 20")
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ConfigError(f"eval.beam_size: {beam_size!r} is not a positive integer",
                          hint="set eval.beam_size to 1 (greedy) or more")
    recommends = REC in model.tasks
    first: dict[int, RecInstance] = {}
    for inst in split.rec:
        first.setdefault(inst.sample.sample_id, inst)
    generated: dict[int, list[str]] = {}           # sample id -> response
    release: dict[int, list[str]] = {}             # sample id -> the release's view of the decoding
    options = _generate_options(model, beam_size, no_repeat_ngram)
    specials = set(model.data.vocab.SPECIALS)
    recommended: dict[int, list[int]] = {}
    # batches of similar context length waste less work on padding; results return to split order
    by_length = sorted(split.samples, key=lambda s: sum(len(t.tokens) for t in s.context))
    nll: dict[int, tuple[float, int]] = {}         # sample id -> (gold-token NLL, gold tokens)
    scores_nll = True
    was_training = _inference(model)
    try:
        with model.inference():
            for chunk in _batches(by_length, batch_size, f"generate {split.split}"):
                batch = move_to(model.collate(chunk, CONV), model.device)
                out = model.generate(batch, max_length, beam_size, **options)
                if len(out) != len(chunk):
                    raise TrainingError(f"{type(model).__name__}.generate returned {len(out)} responses "
                                        f"for {len(chunk)} samples",
                                        hint="return one token list per sample of the batch")
                for sample, response in zip(chunk, out):
                    generated[sample.sample_id] = cut_response(response)
                    if options.get("full"):
                        release[sample.sample_id] = [t for t in response if t not in specials]
                if scores_nll:
                    try:
                        sums, count = model.response_nll(batch)
                        for sample, value, n in zip(chunk, sums.detach().double().cpu().reshape(-1).tolist(),
                                                    count.detach().cpu().reshape(-1).tolist()):
                            nll[sample.sample_id] = (value, int(n))
                    except NotImplementedError:
                        scores_nll = False
                        logger.warning(f"{type(model).__name__} does not score responses: no perplexity")
                if recommends:
                    scores = _score(model, [_query(s, first) for s in chunk])
                    k = min(TOP_K_RECORDED, scores.shape[1])
                    for sample, top in zip(chunk, torch.topk(scores, k, dim=1).indices.cpu().tolist()):
                        recommended[sample.sample_id] = top
    finally:
        model.train(was_training)
    generated = [generated[s.sample_id] for s in split.samples]        # back to split order
    recommended = [recommended[s.sample_id] for s in split.samples] if recommends else []
    references = [s.response.tokens for s in split.samples]
    per_response: dict[str, list[float]] = {}
    metrics = generation_metrics(generated, references, is_mention, per_response)
    released = [release[s.sample_id] for s in split.samples] if release else []
    if released:
        for n in (2, 3, 4):
            metrics[f"dist_release@{n}"] = distinct(released, n)[0]
    if scores_nll:
        metrics["ppl"] = perplexity([nll[s.sample_id][0] for s in split.samples] or 0.0,
                                    [nll[s.sample_id][1] for s in split.samples] or 0)
    items, titles, mention_titles = model.data.items, model.data.item_titles, model.data.mention_titles()
    records = []
    for i, (sample, response) in enumerate(zip(split.samples, generated)):
        # movie mentions shown as titles; "generated_tokens" keeps the model's exact output
        record = {"sample_id": sample.sample_id, "conv_id": sample.conv_id,
                  "turn_index": sample.turn_index,
                  "context": [f"{t.role}: {render_mentions(t.text, mention_titles)}" for t in sample.context],
                  "gold": render_mentions(sample.response.text, mention_titles),
                  "generated": detokenize(response, mention_titles),
                  "generated_tokens": " ".join(response),
                  "generated_items": [model.data.mention_items[t] for t in response
                                      if t in model.data.mention_items],
                  "gold_items": list(sample.response.items),
                  "context_items": list(dict.fromkeys(i for t in sample.context for i in t.items)),
                  **{name: scores[i] for name, scores in per_response.items()}}
        if scores_nll:
            record["nll"], record["tokens"] = nll[sample.sample_id]
        if released:
            record["generated_release"] = " ".join(released[i])
        if recommends:
            record["recommended"] = [items[j] for j in recommended[i]]
            record["recommended_titles"] = [titles.get(items[j], "") for j in recommended[i]]
        records.append(record)
    return {f"gen/{k}": v for k, v in metrics.items()}, records


@torch.no_grad()
def evaluate_perplexity(model: CRSModel, split: SplitInstances, batch_size: int) -> dict[str, float]:
    """{"gen/ppl": ...}: the gold responses' perplexity under teacher forcing (no decoding), the cheap
    validation signal of a conversation stage."""
    _check_batch_size(batch_size)
    nll, count = 0.0, 0
    was_training = _inference(model)
    try:
        with model.inference():
            for chunk in _batches(split.samples, batch_size, f"perplexity {split.split}"):
                sums, counts = model.response_nll(move_to(model.collate(chunk, CONV), model.device))
                nll += float(sums.double().sum())
                count += int(counts.sum())
    finally:
        model.train(was_training)
    return {"gen/ppl": perplexity(nll, count)}


def with_other_contexts(samples: Sequence[Sample], seed: int) -> list[Sample]:
    """Each sample given the context (turns, items, entities, words) of another sample of the list,
    paired by a seeded random permutation: the control of `evaluate_context_use`."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    return [replace(s, context=o.context, context_items=o.context_items, context_entities=o.context_entities,
                    context_words=o.context_words) for s, o in zip(samples, (samples[j] for j in order))]


def evaluate_context_use(model: CRSModel, split: SplitInstances, batch_size: int, seed: int = 1,
                         own: float | None = None) -> dict[str, float]:
    """Does the decoder read its context (issue 12 §3)? The gold responses' perplexity with each
    sample's own context ("gen/ppl"; `own` when the caller already has it for these samples) and with
    another sample's ("gen/ppl_other_context", same pairs for every model given the seed), and their
    ratio "gen/context_gain" (near 1: context ignored)."""
    if own is None:
        own = evaluate_perplexity(model, split, batch_size)["gen/ppl"]
    other_split = SplitInstances(split.split, with_other_contexts(split.samples, seed), [], {})
    other = evaluate_perplexity(model, other_split, batch_size)["gen/ppl"]
    return {"gen/ppl": own, "gen/ppl_other_context": other, "gen/context_gain": other / own}


def write_predictions(path: str | Path, records: Sequence[dict]) -> None:
    """Per-instance predictions as JSON lines (one record per line, UTF-8), written atomically."""
    atomic_write(path, lambda h: h.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
