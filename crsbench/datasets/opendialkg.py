"""OpenDialKG movie recommendations (iEvaLM-CRS release) -> the model-independent representation.

The release has one line per recommendation turn with its whole preceding context; the lines of a
dialogue are spread over the splits. Within each split, a dialogue is rebuilt from its longest line
(its context plus response; every shorter line of that dialogue is a prefix, which is checked), and
the turns that carry a recommendation label become the samples (`Conversation.sample_turns`).
Roles alternate, the labelled response being the recommender's. Entities are linked with the
release's own per-dialogue entity annotations (exact, case-insensitive, on word boundaries); the
items are the entities listed in item_ids.json. Words use ReDial's ConceptNet subgraph.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from crsbench.datasets.base import DatasetSpec, in_train_fraction
from crsbench.datasets.conceptnet import (EDGES_FILE, INDEX_FILE, STOPWORDS_FILE, WordLinker,
                                          load_word_kg, read_stopwords)
from crsbench.datasets.jsonl import read_json, read_jsonl, require
from crsbench.datasets.kg import build_entity_kg
from crsbench.datasets.text import tokenize
from crsbench.datasets.types import RECOMMENDER, SEEKER, SPLITS, Conversation, DatasetBundle, Turn
from crsbench.datasets.vocab import vocabulary_and_embeddings
from crsbench.errors import DataError
from crsbench.registry import register_dataset

REDIAL = "../redial/"


def _names_in(text: str, names: list[str], entity2id: dict[str, int]) -> list[int]:
    """Ids of the given names occurring in text (case-insensitive, whole words), in text order."""
    lowered = text.lower()
    found = []
    for name in names:
        match = re.search(r"(?<!\w)" + re.escape(name.lower()) + r"(?!\w)", lowered)
        if match and name in entity2id:
            found.append((match.start(), entity2id[name]))
    out: list[int] = []
    for _, entity in sorted(found):
        if entity not in out:
            out.append(entity)
    return out


@register_dataset("opendialkg")
class OpenDialKGSpec(DatasetSpec):
    """OpenDialKG movie-domain recommendation dialogues with their movie KG."""

    config_file = Path(__file__).with_name("opendialkg.yaml")
    subdir = "opendialkg"
    input_files = ("train_data.jsonl", "valid_data.jsonl", "test_data.jsonl", "kg.json", "entity2id.json",
                   "relation2id.json", "item_ids.json", "id2info.json", REDIAL + STOPWORDS_FILE,
                   REDIAL + EDGES_FILE, REDIAL + INDEX_FILE)

    def build(self) -> DatasetBundle:
        s, root = self.settings, self.root
        entity2id = read_json(root / "entity2id.json")
        relation2id = read_json(root / "relation2id.json")
        kg_raw = read_json(root / "kg.json")
        item_ids = read_json(root / "item_ids.json")
        info = read_json(root / "id2info.json")
        for name, obj, kind in (("entity2id.json", entity2id, dict), ("relation2id.json", relation2id, dict),
                                ("kg.json", kg_raw, dict), ("item_ids.json", item_ids, list),
                                ("id2info.json", info, dict)):
            if not isinstance(obj, kind):
                raise DataError(f"{root / name}: expected a JSON {kind.__name__}", hint="replace the file")
        num_nodes = max(entity2id.values()) + 1
        node_names = [""] * num_nodes
        for name, entity in entity2id.items():
            node_names[entity] = name
        relation_names = [""] * (max(relation2id.values()) + 1)
        for name, rel in relation2id.items():
            relation_names[rel] = name
        triples = []
        for head, pairs in kg_raw.items():
            for k, pair in enumerate(pairs):
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise DataError(f"{root / 'kg.json'}: entry '{head}'[{k}] should be [relation, tail]",
                                    hint="fix that entry")
                triples.append((int(head), int(pair[0]), int(pair[1])))
        entity_kg = build_entity_kg(triples, num_nodes, relation_names, node_names, s["kg_min_relation_edges"])
        stopwords = read_stopwords(root / REDIAL / STOPWORDS_FILE)
        word_kg, word_index = load_word_kg(root / REDIAL / EDGES_FILE, root / REDIAL / INDEX_FILE, stopwords)
        words = WordLinker(word_index, stopwords)
        items = list(dict.fromkeys(int(i) for i in item_ids))
        item_set = set(items)

        stats: Counter = Counter()
        splits = {}
        for split in SPLITS:
            splits[split] = self._split(split, entity2id, item_set, words, stats)
        splits["train"] = [c for c in splits["train"] if in_train_fraction(c.conv_id, s["train_fraction"])]
        vocab, embeddings = vocabulary_and_embeddings(splits["train"], s)
        titles = {}
        for key, record in info.items():
            if isinstance(record, dict) and int(key) in item_set:
                year = record.get("year")
                titles[int(key)] = f"{record.get('name', node_names[int(key)])}" + (f" ({year})" if year else "")
        for item in items:
            titles.setdefault(item, node_names[item])
        stats.update(entities=num_nodes, relations=entity_kg.num_relations, entity_edges=entity_kg.num_edges,
                     items=len(items), vocab=len(vocab))
        return DatasetBundle("opendialkg", splits, entity_kg, word_kg, items, titles, vocab, embeddings,
                             fingerprint="", stats=dict(stats))

    def _split(self, split: str, entity2id: dict, item_set: set[int], words: WordLinker,
               stats: Counter) -> list[Conversation]:
        path = self.root / f"{split}_data.jsonl"
        lines: dict[int, list[tuple[int, dict]]] = defaultdict(list)
        for lineno, record in read_jsonl(path):
            where = f"{path}:{lineno}"
            dialog = require(record, "dialog_id", int, where)
            require(record, "turn_id", int, where)
            context = require(record, "context", list, where)
            require(record, "resp", str, where)
            for key in ("entity", "rec"):
                require(record, key, list, where)
            if not all(isinstance(u, str) for u in context):
                raise DataError(f"{where}: 'context' should be a list of strings", hint="fix that record")
            lines[dialog].append((lineno, record))   # the response's position is len(context)
        convs = []
        for dialog, records in sorted(lines.items()):
            records.sort(key=lambda lr: len(lr[1]["context"]))
            longest = records[-1][1]
            texts = longest["context"] + [longest["resp"]]
            groups = [records]
            if any(texts[:len(r["context"]) + 1] != r["context"] + [r["resp"]] for _, r in records[:-1]):
                groups = [[lr] for lr in records]        # not one growing dialogue: keep lines apart
                stats[f"{split}_unmerged_dialogues"] += 1
            for group in groups:
                convs.append(self._conversation(split, dialog, group, entity2id, item_set, words, stats))
        stats[f"{split}_conversations"] = len(convs)
        return convs

    def _conversation(self, split: str, dialog: int, records: list[tuple[int, dict]], entity2id: dict,
                      item_set: set[int], words: WordLinker, stats: Counter) -> Conversation:
        longest = records[-1][1]
        texts = longest["context"] + [longest["resp"]]
        names = list(dict.fromkeys(n for _, r in records for n in r["entity"] + r["rec"] if isinstance(n, str)))
        labels: dict[int, list[int]] = {}
        for lineno, record in records:
            rec = []
            for name in record["rec"]:
                entity = entity2id.get(name)
                if entity is None or entity not in item_set:
                    stats[f"{split}_unknown_rec_names"] += 1
                elif entity not in rec:
                    rec.append(entity)
            labels[len(record["context"])] = rec
        last = len(texts) - 1
        turns = []
        for t, text in enumerate(texts):
            tokens = tokenize(text)
            linked = _names_in(text, names, entity2id)
            mentioned = labels[t] if t in labels else [e for e in linked if e in item_set]
            entities = [e for e in linked if e not in mentioned]
            role = RECOMMENDER if (last - t) % 2 == 0 else SEEKER
            turns.append(Turn(role, text, tokens, mentioned, entities, words.link(tokens)))
        first_line = records[0][0]
        return Conversation(f"{split}-{dialog}-{first_line}", turns, sorted(labels))
