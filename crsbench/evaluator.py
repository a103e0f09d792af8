"""Scores any model on the shared instances with the shared metrics (one protocol for all models)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from crsbench.atomic import atomic_write
from crsbench.datasets.instances import RecInstance, SplitInstances
from crsbench.datasets.text import is_mention
from crsbench.metrics.generation import cut_response, generation_metrics, perplexity
from crsbench.metrics.recommendation import ranking_metrics, target_ranks
from crsbench.models.base import CONV, REC, CRSModel, move_to

TOP_K_RECORDED = 10


def _batches(items: list, size: int, desc: str):
    for start in tqdm(range(0, len(items), size), desc=desc, leave=False, mininterval=2.0):
        yield items[start:start + size]


@torch.no_grad()
def evaluate_recommendation(model: CRSModel, split: SplitInstances, views: Sequence[str],
                            ks: Sequence[int], batch_size: int) -> tuple[dict[str, float], list[dict]]:
    """Rank every target of `split` among all candidate items; metrics per view ("all/recall@10").

    Each distinct context is scored once (the model sees one instance per sample; targets are not
    inputs at inference), then every target of that sample is ranked against those scores.
    """
    was_training = model.training
    model.eval()
    by_sample: dict[int, list[int]] = {}
    for i, inst in enumerate(split.rec):
        by_sample.setdefault(inst.sample.sample_id, []).append(i)
    firsts = [split.rec[idx[0]] for idx in by_sample.values()]
    ranks = torch.zeros(len(split.rec), dtype=torch.long)
    top: dict[int, list[int]] = {}
    with model.inference():
        for chunk in _batches(firsts, batch_size, f"rank {split.split}"):
            scores = model.recommend(move_to(model.collate(chunk, REC), model.device)).float().cpu()
            for row, inst in enumerate(chunk):
                rows = by_sample[inst.sample.sample_id]
                targets = torch.tensor([split.rec[i].target_index for i in rows])
                ranks[rows] = target_ranks(scores[row].expand(len(rows), -1), targets)
                top[inst.sample.sample_id] = torch.topk(scores[row], min(TOP_K_RECORDED, scores.shape[1])).indices.tolist()
    model.train(was_training)
    metrics: dict[str, float] = {}
    membership: dict[int, list[str]] = {}
    for view in views:
        idx = split.views[view]
        for key, value in ranking_metrics(ranks[idx], ks).items():
            metrics[f"{view}/{key}"] = value
        for i in idx:
            membership.setdefault(i, []).append(view)
    items = model.data.items
    records = [{"sample_id": inst.sample.sample_id, "conv_id": inst.sample.conv_id,
                "turn_index": inst.sample.turn_index, "target": inst.target, "rank": int(ranks[i]),
                "top_items": [items[j] for j in top[inst.sample.sample_id]],
                "views": membership.get(i, [])}
               for i, inst in enumerate(split.rec)]
    return metrics, records


@torch.no_grad()
def evaluate_generation(model: CRSModel, split: SplitInstances, batch_size: int, max_length: int,
                        beam_size: int) -> tuple[dict[str, float], list[dict]]:
    """Generate a response for every sample and score them; perplexity from the gold responses."""
    was_training = model.training
    model.eval()
    generated: list[list[str]] = []
    nll_total, tokens_total = 0.0, 0
    with model.inference():
        for chunk in _batches(split.samples, batch_size, f"generate {split.split}"):
            batch = move_to(model.collate(chunk, CONV), model.device)
            generated += [cut_response(r) for r in model.generate(batch, max_length, beam_size)]
            nll, count = model.response_nll(batch)
            nll_total += float(nll.sum())
            tokens_total += int(count.sum())
    model.train(was_training)
    references = [s.response.tokens for s in split.samples]
    metrics = generation_metrics(generated, references, is_mention)
    metrics["ppl"] = perplexity(nll_total, tokens_total)
    records = [{"sample_id": s.sample_id, "conv_id": s.conv_id, "turn_index": s.turn_index,
                "context": [t.text for t in s.context], "gold": s.response.text,
                "generated": " ".join(g)} for s, g in zip(split.samples, generated)]
    return {f"gen/{k}": v for k, v in metrics.items()}, records


def write_predictions(path: str | Path, records: list[dict]) -> None:
    """Per-instance predictions as JSON lines, written atomically."""
    atomic_write(path, lambda h: h.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
