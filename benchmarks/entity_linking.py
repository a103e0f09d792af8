"""Entity linker quality against hand annotations, and its speed on the whole shared ReDial data.

    python benchmarks/entity_linking.py

Gold: tests/data/linker_gold_valid50.jsonl, the first 50 conversations of valid_data.jsonl (998
messages) annotated by hand from the raw text: every DBpedia entity a careful annotator would link
(people, films named in plain text, genres, organisations, places); movie mentions (@id) are not
part of it. Mentions with no entity in the KGSF subgraph are listed as unlinkable and not scored.
Micro precision / recall / F1 over (message, entity) pairs, for exact matching alone and with
fuzzy matching.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from crsbench.config.loader import DEFAULTS_FILE
from crsbench.datasets.base import resolve_data_dir
from crsbench.datasets.conceptnet import STOPWORDS_FILE, read_stopwords
from crsbench.datasets.jsonl import read_jsonl
from crsbench.datasets.kg import build_entity_kg
from crsbench.datasets.redial import RedialSpec
from crsbench.datasets.safe_pickle import load_pickle
from crsbench.datasets.text import tokenize

GOLD = Path(__file__).resolve().parents[1] / "tests" / "data" / "linker_gold_valid50.jsonl"


def make_linkers(data_dir: Path | None = None) -> dict:
    """The pipeline's linker, exact-only and exact+fuzzy, built as RedialSpec.build builds it."""
    settings = yaml.safe_load(DEFAULTS_FILE.read_text())["data"]
    out = {}
    for fuzzy in (False, True):
        spec = RedialSpec(resolve_data_dir(data_dir), {**settings, "linker_fuzzy": fuzzy})
        entity2id = load_pickle(spec.root / "entity2entityId.pkl")
        subkg = load_pickle(spec.root / "subkg.pkl")
        kg = build_entity_kg([(h, r, t) for h, p in subkg.items() for r, t in p], max(entity2id.values()) + 1,
                             [str(r) for r in range(300)], [""] * (max(entity2id.values()) + 1),
                             settings["kg_min_relation_edges"])
        out["exact+fuzzy" if fuzzy else "exact"] = spec.entity_linker(
            entity2id, read_stopwords(spec.root / STOPWORDS_FILE), spec._read_split("train"), kg)
    return out


def score(linker, data_dir: Path | None = None) -> dict[str, float]:
    """Micro precision/recall/F1 of `linker` on the gold messages."""
    root = resolve_data_dir(data_dir) / "redial"
    gold = {(g["conversationId"], g["message"]): set(g["gold"]) for _, g in read_jsonl(GOLD)}
    texts = {}
    for _, conv in read_jsonl(root / "valid_data.jsonl"):
        for i, message in enumerate(conv["messages"]):
            if (conv["conversationId"], i) in gold:
                texts[(conv["conversationId"], i)] = message["text"]
    tp = fp = fn = 0
    for key, expected in gold.items():
        found = set(linker.link(tokenize(texts[key]), texts[key]))
        tp += len(found & expected)
        fp += len(found - expected)
        fn += len(expected - found)
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(precision + recall, 1e-9), "tp": tp, "fp": fp, "fn": fn}


def main() -> None:
    linkers = make_linkers()
    for name, linker in linkers.items():
        m = score(linker)
        print(f"{name:>12}: precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}  "
              f"(tp {m['tp']}, fp {m['fp']}, fn {m['fn']}; {len(GOLD.read_text().splitlines())} messages)")
    root = resolve_data_dir(None) / "redial"
    messages = [m["text"] for split in ("train", "valid", "test")
                for _, conv in read_jsonl(root / f"{split}_data.jsonl") for m in conv["messages"]]
    for name, linker in linkers.items():
        start = time.perf_counter()
        links = sum(len(linker.link(tokenize(t), t)) for t in messages)
        print(f"{name:>12}: linked {len(messages)} messages of the whole shared ReDial data in "
              f"{time.perf_counter() - start:.1f} s ({links} links)")


if __name__ == "__main__":
    main()
