"""Linking message text to DBpedia entities (the KGSF release's precomputed links are not public).

Exact matching: the longest n-gram (up to `max_ngram` tokens) whose normalised form is an entity
name, left to right, no overlaps. Precision rules, because DBpedia names many common words:
- a single-token name matches only if it is a genre alias ("horror" for "Horror film"), or is
  capitalised in the raw text and not the first word of a sentence (a proper noun, "Pixar");
  never a stopword;
- a multi-token name typed all in lower case must contain a word outside the corpus's most common
  words ("vietnam war" links, "big star" does not); capitalised ("Big Star") it always may.
Fuzzy matching (fuzzywuzzy ratio >= `fuzzy_cutoff`) catches misspelt names: only for spans of 2+
capitalised tokens that found no exact match, against names of 2+ tokens that start with the same
letter and have a similar length (blocking keeps it fast).
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Mapping
from urllib.parse import unquote

from fuzzywuzzy import fuzz

from crsbench.datasets.text import is_mention, tokenize

DBPEDIA_PREFIX = "<http://dbpedia.org/resource/"
_DISAMBIGUATION = re.compile(r"\s*\([^)]*\)\s*$")
_SENTENCE_END = frozenset(".!?")


def uri_to_name(uri: str) -> tuple[str, bool]:
    """("The Thin Red Line", True) for <http://dbpedia.org/resource/The_Thin_Red_Line_(1998_film)>."""
    name = uri[len(DBPEDIA_PREFIX):] if uri.startswith(DBPEDIA_PREFIX) else uri.strip("<>")
    name = unquote(name.rstrip(">")).replace("_", " ").strip()
    stripped = _DISAMBIGUATION.sub("", name)
    return (stripped or name), stripped != name


class EntityLinker:
    """Finds DBpedia entities named in a message."""

    def __init__(self, names: Mapping[tuple[str, ...], int], lowercase_ok: frozenset[tuple[str, ...]],
                 stopwords: frozenset[str], common_words: frozenset[str] = frozenset(),
                 max_ngram: int = 5, fuzzy: bool = True, fuzzy_cutoff: int = 90) -> None:
        self.names = dict(names)
        self.lowercase_ok = lowercase_ok
        self.stopwords = stopwords
        self.common_words = common_words | stopwords
        self.max_ngram, self.fuzzy, self.fuzzy_cutoff = max_ngram, fuzzy, fuzzy_cutoff
        self._fuzzy_blocks: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for key, entity in self.names.items():
            if len(key) >= 2:
                text = " ".join(key)
                self._fuzzy_blocks[text[0]].append((text, entity))

    @classmethod
    def from_dbpedia_uris(cls, uri_to_id: Mapping, stopwords: frozenset[str] = frozenset(),
                          common_words: frozenset[str] = frozenset(),
                          priority: Mapping[int, float] | None = None, max_ngram: int = 5,
                          fuzzy: bool = True, fuzzy_cutoff: int = 90) -> "EntityLinker":
        """Index every URI's name. Several entities with one name: the one without a
        disambiguation suffix wins, then the higher `priority` (e.g. KG degree), then the lower id."""
        priority = priority or {}
        best: dict[tuple[str, ...], tuple[tuple, int]] = {}
        lowercase_ok: set[tuple[str, ...]] = set()

        def offer(key: tuple[str, ...], entity: int, rank: tuple) -> None:
            if key and (key not in best or rank > best[key][0]):
                best[key] = (rank, entity)

        for uri, entity in uri_to_id.items():
            if not isinstance(uri, str) or not uri.startswith(DBPEDIA_PREFIX):
                continue            # movie ids used as keys, and a few non-DBpedia URLs
            name, disambiguated = uri_to_name(uri)
            key = tuple(tokenize(name))
            rank = (not disambiguated, priority.get(entity, 0.0), -entity)
            offer(key, entity, rank)
            # genre alias: "Horror film" is also "horror", usable in lower case
            if len(key) == 2 and key[1] == "film" and not disambiguated and key[0] not in stopwords:
                alias = key[:1]
                offer(alias, entity, (False,) + rank[1:])
                lowercase_ok.add(alias)
        names = {key: entity for key, (_, entity) in best.items()}
        return cls(names, frozenset(lowercase_ok), stopwords, common_words, max_ngram, fuzzy,
                   fuzzy_cutoff)

    def _accept(self, key: tuple[str, ...], cased: list[str] | None, i: int) -> bool:
        """The precision rules of the module docstring for a name of len(key) tokens at i."""
        if len(key) == 1:
            token = key[0]
            if token in self.stopwords or len(token) < 3 or not token.isalpha():
                return False
            if key in self.lowercase_ok:
                return True
            sentence_start = i == 0 or (cased is not None and cased[i - 1] in _SENTENCE_END)
            return cased is not None and cased[i][:1].isupper() and not sentence_start
        if all(t in self.stopwords for t in key):
            return False
        typed_capitalised = cased is not None and any(c[:1].isupper() for c in cased[i:i + len(key)])
        return typed_capitalised or any(t not in self.common_words for t in key)

    def link(self, tokens: list[str], text: str | None = None) -> list[int]:
        """Entity ids named in the message, in order of first appearance, no repeats."""
        cased = tokenize_cased(text) if text is not None else None
        if cased is not None and len(cased) != len(tokens):
            cased = None
        found: list[int] = []
        seen: set[int] = set()
        names = self.names
        i, n = 0, len(tokens)
        while i < n:
            matched = 0
            if not is_mention(tokens[i]):
                for size in range(min(self.max_ngram, n - i), 0, -1):
                    key = tuple(tokens[i:i + size])
                    entity = names.get(key)
                    if entity is None:
                        continue
                    if not self._accept(key, cased, i):
                        continue
                    matched = size
                    if entity not in seen:
                        seen.add(entity)
                        found.append(entity)
                    break
            if not matched and self.fuzzy and cased is not None:
                matched = self._fuzzy_at(tokens, cased, i, found, seen)
            i += matched or 1
        return found

    def _fuzzy_at(self, tokens: list[str], cased: list[str], i: int, found: list[int],
                  seen: set[int]) -> int:
        """Try a misspelt name starting at i: the longest run (2..max_ngram) of capitalised tokens."""
        end = i
        while end < len(tokens) and end - i < self.max_ngram and cased[end][:1].isupper() \
                and cased[end] != "I" and not is_mention(tokens[end]):
            end += 1
        if end - i < 2:
            return 0
        span = " ".join(tokens[i:end])
        best_score, best_entity = 0, None
        for name, entity in self._fuzzy_blocks.get(span[0], ()):
            if abs(len(name) - len(span)) > max(2, len(span) // 5):
                continue
            score = fuzz.ratio(span, name)
            if score > best_score:
                best_score, best_entity = score, entity
        if best_entity is None or best_score < self.fuzzy_cutoff:
            return 0
        if best_entity not in seen:
            seen.add(best_entity)
            found.append(best_entity)
        return end - i


_CASED = re.compile(r"@\d+|\w+(?:[-'’]\w+)*|[^\w\s]")
_MENTION = re.compile(r"@\s*(\d+)")


def tokenize_cased(text: str) -> list[str]:
    """The tokens of text.tokenize before lower-casing (same boundaries), for capitalisation tests."""
    return _CASED.findall(_MENTION.sub(r"@\1", text))
