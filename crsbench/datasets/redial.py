"""ReDial (+ KGSF's DBpedia and ConceptNet subgraphs) -> the model-independent representation."""
from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from loguru import logger

from crsbench.datasets.base import DatasetSpec, in_train_fraction
from crsbench.datasets.conceptnet import (EDGES_FILE, INDEX_FILE, STOPWORDS_FILE, WordLinker,
                                          load_word_kg, read_stopwords)
from crsbench.datasets.entity_linker import EntityLinker, uri_to_name
from crsbench.datasets.jsonl import read_jsonl, require
from crsbench.datasets.kg import build_entity_kg
from crsbench.datasets.safe_pickle import load_pickle
from crsbench.datasets.text import tokenize
from crsbench.datasets.types import (RECOMMENDER, SEEKER, SPLITS, Conversation, DatasetBundle, Turn)
from crsbench.datasets.vocab import vocabulary_and_embeddings
from crsbench.errors import DataError
from crsbench.registry import register_dataset

COMMON_WORDS = 1000          # the entity linker's "common words": this many most frequent in train
_MENTION = re.compile(r"@\s*(\d+)")


def _item_of_movie(movie_id: str, id2entity: dict, entity2id: dict, candidates: set[int],
                   uri_only: bool = False) -> int | None:
    """Movie id -> candidate entity id: through its DBpedia URI, else (812 of the 6,924 candidates
    have none) through the movie id, which entity2entityId.pkl also maps. `uri_only` (the
    `data.release_instances` setting) leaves the movies without a URI unmapped, as the release's
    loader does (`entity2entityId[id2entity[id]]` fails for them and the mention is skipped)."""
    try:
        key = int(movie_id)
    except ValueError:
        return None
    uri = id2entity.get(key)
    if uri is None and uri_only:
        return None
    entity = entity2id.get(uri) if uri is not None else entity2id.get(key)
    return entity if entity in candidates else None


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_release_pickles(root: Path) -> tuple[dict, dict, list, dict]:
    """entity2entityId, id2entity, movie_ids and subkg, loaded through the allow-list unpickler and
    checked against the release's schema: a file of the right type with wrong contents is a
    DataError naming the file and the first bad entry."""
    def bad(name: str, problem: str) -> DataError:
        return DataError(f"{root / name}: {problem}", hint="replace it with the KGSF release's file "
                                                             "(see the data README)")

    loaded = {}
    for name, kind in (("entity2entityId.pkl", dict), ("id2entity.pkl", dict), ("movie_ids.pkl", list),
                       ("subkg.pkl", dict)):
        obj = load_pickle(root / name)
        if not isinstance(obj, kind):
            raise bad(name, f"expected a {kind.__name__}, got {type(obj).__name__}")
        if not obj:
            raise bad(name, f"the {kind.__name__} is empty")
        loaded[name] = obj
    entity2id, id2entity = loaded["entity2entityId.pkl"], loaded["id2entity.pkl"]
    candidates, subkg = loaded["movie_ids.pkl"], loaded["subkg.pkl"]
    for key, value in entity2id.items():
        if not isinstance(key, (str, int)) or not _is_id(value):
            raise bad("entity2entityId.pkl", f"entry {key!r} -> {value!r}: expected a DBpedia URI (or movie id) "
                                             "mapped to an entity id (an integer >= 0)")
    num_entities = max(entity2id.values()) + 1
    for key, value in id2entity.items():
        if not isinstance(key, int) or not (value is None or isinstance(value, str)):
            raise bad("id2entity.pkl", f"entry {key!r} -> {value!r}: expected a movie id (integer) mapped to a "
                                       "DBpedia URI or None")
    for position, item in enumerate(candidates):
        if not _is_id(item) or item >= num_entities:
            raise bad("movie_ids.pkl", f"item {position} is {item!r}: expected an entity id in 0..{num_entities - 1} "
                                       "(the ids of entity2entityId.pkl)")
    for head, pairs in subkg.items():
        if not _is_id(head) or head >= num_entities or not isinstance(pairs, list):
            raise bad("subkg.pkl", f"entry {head!r}: expected an entity id in 0..{num_entities - 1} mapped to a "
                                   "list of (relation, tail) pairs")
        for pair in pairs:
            if (not isinstance(pair, (tuple, list)) or len(pair) != 2 or not _is_id(pair[0])
                    or not _is_id(pair[1]) or pair[1] >= num_entities):
                raise bad("subkg.pkl", f"entry {head!r} holds {pair!r}: expected (relation id, tail entity id "
                                       f"in 0..{num_entities - 1})")
    return entity2id, id2entity, candidates, subkg


@register_dataset("redial")
class RedialSpec(DatasetSpec):
    """ReDial conversations in the KGSF release layout. Three record shapes are read: the original
    (one message per line of chat, `messageId`/`timeOffset`, questionnaires), and records whose
    consecutive messages of one speaker are already merged, with questionnaires or with empty ones."""

    config_file = Path(__file__).with_name("redial.yaml")
    subdir = "redial"
    input_files = ("train_data.jsonl", "valid_data.jsonl", "test_data.jsonl", "entity2entityId.pkl",
                   "id2entity.pkl", "movie_ids.pkl", "subkg.pkl", STOPWORDS_FILE, EDGES_FILE, INDEX_FILE)

    def ensure_files(self) -> None:
        from crsbench.datasets.download import KGSF_REDIAL_FILES, ensure_files
        ensure_files(self.root, KGSF_REDIAL_FILES, allow_download=self.settings.get("download", True))

    def build(self) -> DatasetBundle:
        s, root = self.settings, self.root
        t0 = time.perf_counter()
        entity2id, id2entity, candidates, subkg = read_release_pickles(root)
        items = list(dict.fromkeys(candidates))
        candidate_set = set(items)

        # --- knowledge graphs ---------------------------------------------------------------
        num_entities = max(entity2id.values()) + 1
        node_names = [""] * num_entities
        for key, entity in entity2id.items():
            node_names[entity] = uri_to_name(key)[0] if isinstance(key, str) else f"movie {key}"
        triples = [(h, r, t) for h, pairs in subkg.items() for r, t in pairs]
        num_rel = max((r for _, r, _ in triples), default=-1) + 1
        entity_kg = build_entity_kg(triples, num_entities, [f"dbpedia_relation_{r}" for r in range(num_rel)],
                                    node_names, s["kg_min_relation_edges"], s["kg_edges"])
        stopwords = read_stopwords(root / STOPWORDS_FILE)
        word_kg, word_index = load_word_kg(root / EDGES_FILE, root / INDEX_FILE, stopwords)
        t_kg = time.perf_counter()

        # --- conversations ------------------------------------------------------------------
        raw = {split: self._read_split(split) for split in SPLITS}
        raw["train"] = [c for c in raw["train"] if in_train_fraction(c["id"], s["train_fraction"])]
        t_read = time.perf_counter()
        linker = self.entity_linker(entity2id, stopwords, raw["train"], entity_kg)
        words = WordLinker(word_index, stopwords)
        stats: Counter = Counter()
        release = bool(s.get("release_instances"))
        splits = {}
        for split in SPLITS:
            convs = []
            for conv in raw[split]:
                movies = {m: _item_of_movie(m, id2entity, entity2id, candidate_set, release)
                          for m in conv["mentions"]}
                turns = []
                for role, text in conv["turns"]:
                    tokens = tokenize(text)
                    mentioned: list[int] = []
                    for mention in _MENTION.findall(text):
                        item = movies.get(mention)
                        if item is None and release and mention in movies and \
                                _item_of_movie(mention, id2entity, entity2id, candidate_set) is not None:
                            stats[f"{split}_release_dropped_mentions"] += 1    # no URI: not an item here
                        elif item is None:
                            stats[f"{split}_unknown_mentions"] += 1
                            logger.warning(f"{conv['where']}: movie mention @{mention} is not in movieMentions or "
                                           "has no candidate entity; kept as a word, not an item (as KGSF)")
                        elif item not in mentioned:
                            mentioned.append(item)
                    entities = [e for e in linker.link(tokens, text) if e not in mentioned]
                    turns.append(Turn(role, text, tokens, mentioned, entities, words.link(tokens)))
                    stats[f"{split}_turns"] += 1
                    stats[f"{split}_linked_entities"] += len(entities)
                feedback = {}
                for movie, answers in conv["questions"].items():
                    item = movies.get(movie) or _item_of_movie(movie, id2entity, entity2id, candidate_set, release)
                    if item is not None and isinstance(answers, dict):
                        feedback[item] = {k: int(v) for k, v in answers.items() if isinstance(v, int)}
                convs.append(Conversation(conv["id"], turns, None, feedback))
            splits[split] = convs
            stats[f"{split}_conversations"] = len(convs)
        t_link = time.perf_counter()

        # --- vocabulary and word2vec on train -----------------------------------------------
        vocab, embeddings = vocabulary_and_embeddings(splits["train"], s)
        t_w2v = time.perf_counter()
        titles, mention_items = {}, {}
        for conv in raw["train"] + raw["valid"] + raw["test"]:
            for movie, title in conv["mentions"].items():
                item = _item_of_movie(movie, id2entity, entity2id, candidate_set)
                if item is not None:
                    mention_items[f"@{movie}"] = item
                if item is not None and isinstance(title, str) and item not in titles:
                    titles[item] = " ".join(title.split())
        for item in items:
            titles.setdefault(item, node_names[item] if item < num_entities else str(item))
        stats.update(entities=num_entities, relations=entity_kg.num_relations, entity_edges=entity_kg.num_edges,
                     words=word_kg.num_nodes, word_edges=word_kg.num_edges, items=len(items), vocab=len(vocab))
        logger.info(f"redial preprocessing: graphs {t_kg - t0:.1f}s, read {t_read - t_kg:.1f}s, "
                    f"tokens+links {t_link - t_read:.1f}s, vocab+word2vec {t_w2v - t_link:.1f}s")
        return DatasetBundle("redial", splits, entity_kg, word_kg, items, titles, vocab, embeddings,
                             fingerprint="", stats=dict(stats), mention_items=mention_items)

    def entity_linker(self, entity2id: dict, stopwords: frozenset[str], train: list[dict],
                      entity_kg) -> EntityLinker:
        """The DBpedia linker: common words from train, ties between equal names broken by KG degree."""
        s = self.settings
        counts = Counter(t for conv in train for _, text in conv["turns"] for t in tokenize(text))
        common = frozenset(w for w, _ in counts.most_common(COMMON_WORDS))
        degree = Counter(entity_kg.edge_index[1].tolist())
        return EntityLinker.from_dbpedia_uris(entity2id, stopwords, common, degree, s["linker_max_ngram"],
                                              s["linker_fuzzy"], s["linker_fuzzy_cutoff"])

    def _read_split(self, split: str) -> list[dict]:
        """Conversations of one split as {id, turns: [(role, text)], mentions, questions}."""
        path = self.root / f"{split}_data.jsonl"
        out = []
        for lineno, record in read_jsonl(path):
            where = f"{path}:{lineno}"
            conv_id = record.get("conversationId", f"{split}-{lineno}")
            seeker = require(record, "initiatorWorkerId", int, where)
            recommender = require(record, "respondentWorkerId", int, where)
            messages = require(record, "messages", list, where)
            mentions = record.get("movieMentions") or {}
            if not isinstance(mentions, dict):
                raise DataError(f"{where}: field 'movieMentions' should be an object", hint="fix that record")
            questions = record.get("initiatorQuestions") or {}
            turns: list[tuple[str, str]] = []
            last_sender = None
            for k, message in enumerate(messages):
                if not isinstance(message, dict):
                    raise DataError(f"{where}: messages[{k}] should be an object", hint="fix that record")
                sender = require(message, "senderWorkerId", int, f"{where} messages[{k}]")
                text = require(message, "text", str, f"{where} messages[{k}]")
                if sender not in (seeker, recommender):
                    raise DataError(f"{where}: messages[{k}] sender {sender} is neither the seeker "
                                    f"({seeker}) nor the recommender ({recommender})", hint="fix that record")
                role = SEEKER if sender == seeker else RECOMMENDER
                if sender == last_sender:          # consecutive messages of one speaker: one turn
                    turns[-1] = (role, turns[-1][1] + " " + text)
                else:
                    turns.append((role, text))
                last_sender = sender
            out.append({"id": str(conv_id), "where": where, "turns": turns, "mentions": mentions,
                        "questions": questions if isinstance(questions, dict) else {}})
        return out
