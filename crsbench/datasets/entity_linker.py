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

# How people name film genres in chat, mapped to the DBpedia genre nodes of the KGSF subgraph
# (the node with the most edges where DBpedia has several). Usable in lower case.
GENRE_LEXICON: dict[str, str] = {
    "comedy": "Comedy", "comedies": "Comedy", "comedys": "Comedy",
    "drama": "Drama", "dramas": "Drama",
    "thriller": "Thriller_(genre)", "thrillers": "Thriller_(genre)",
    "horror": "Horror_film", "horrors": "Horror_film",
    "documentary": "Documentary_film", "documentaries": "Documentary_film",
    "action": "Action_film",
    "sci-fi": "Science_fiction", "sci fi": "Science_fiction", "scifi": "Science_fiction",
    "science fiction": "Science_fiction",
    "fantasy": "Fantasy",
    "animated": "Animation", "animation": "Animation", "cartoon": "Animation", "cartoons": "Animation",
    "romantic comedy": "Romantic_comedy", "romantic comedies": "Romantic_comedy",
    "rom com": "Romantic_comedy", "rom coms": "Romantic_comedy", "rom-com": "Romantic_comedy",
    "rom-coms": "Romantic_comedy", "romcom": "Romantic_comedy", "romcoms": "Romantic_comedy",
    "family movie": "Family_film", "family movies": "Family_film", "family film": "Family_film",
    "family films": "Family_film",
    "psychological thriller": "Psychological_thriller", "psychological thrillers": "Psychological_thriller",
    "dark comedy": "Dark_comedy", "dark comedies": "Dark_comedy",
    "black comedy": "Black_comedy", "black comedies": "Black_comedy",
    "musical": "Musical_film", "musicals": "Musical_film",
    "martial arts": "Martial_arts_film", "kung fu": "Martial_arts_film",
    "superhero": "Superhero_film", "superheroes": "Superhero_film",
    "mystery": "Mystery_film", "mysteries": "Mystery_film",
    "crime": "Crime_film", "teen movie": "Teen_film", "teen movies": "Teen_film",
}


def _strip_possessive(token: str) -> str:
    return token[:-2] if len(token) > 3 and token[-2:] in ("'s", "’s") else token


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
            key = tuple(_strip_possessive(t) for t in tokenize(name))
            offer(key, entity, (not disambiguated, priority.get(entity, 0.0), -entity))
        names = {key: entity for key, (_, entity) in best.items()}
        for phrase, resource in GENRE_LEXICON.items():
            entity = uri_to_id.get(f"{DBPEDIA_PREFIX}{resource}>")
            if entity is not None:
                key = tuple(tokenize(phrase))
                names[key] = entity
                lowercase_ok.add(key)
        return cls(names, frozenset(lowercase_ok), stopwords, common_words, max_ngram, fuzzy,
                   fuzzy_cutoff)

    def _accept(self, key: tuple[str, ...], cased: list[str] | None, i: int) -> bool:
        """The precision rules of the module docstring for a name of len(key) tokens at i."""
        if key in self.lowercase_ok:
            return True
        words = [k for k, t in enumerate(key) if any(ch.isalnum() for ch in t)]
        if len(words) <= 1:                   # "Ha!" is a one-word name
            if not words:
                return False
            token, at = key[words[0]], i + words[0]
            if token in self.stopwords or len(token) < 3 or not token.isalpha():
                return False
            sentence_start = at == 0 or (cased is not None and cased[at - 1] in _SENTENCE_END)
            return cased is not None and _capitalised(cased[at]) and not sentence_start
        if all(t in self.stopwords for t in key):
            return False
        typed_capitalised = cased is not None and any(_capitalised(c) for c in cased[i:i + len(key)])
        return typed_capitalised or any(t not in self.common_words for t in key)

    def link(self, tokens: list[str], text: str | None = None) -> list[int]:
        """Entity ids named in the message, in order of first appearance, no repeats."""
        cased = tokenize_cased(text) if text is not None else None
        if cased is not None and len(cased) != len(tokens):
            cased = None
        tokens = [_strip_possessive(t) for t in tokens]
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
        """Try a misspelt name of 2-3 words at i whose first word is capitalised ("Quinton tarantino")."""
        first = cased[i]
        if not _capitalised(first) or first == "I" or not tokens[i].isalpha() or tokens[i] in self.stopwords:
            return 0
        best_score, best_entity, best_size = 0, None, 0
        for size in (3, 2):
            words = tokens[i:i + size]
            if len(words) < size or not all(w.isalpha() for w in words) or words[-1] in self.stopwords:
                continue
            span = " ".join(words)
            for name, entity in self._fuzzy_blocks.get(span[0], ()):
                if abs(len(name) - len(span)) > max(2, len(span) // 5):
                    continue
                score = fuzz.ratio(span, name)
                if score > best_score:
                    best_score, best_entity, best_size = score, entity, size
        if best_entity is None or best_score < self.fuzzy_cutoff:
            return 0
        if best_entity not in seen:
            seen.add(best_entity)
            found.append(best_entity)
        return best_size


def _capitalised(token: str) -> bool:
    """Title case or a short acronym ("Pixar", "PBS"); a long all-caps word is shouting ("LOVED")."""
    return token[:1].isupper() and not (len(token) > 4 and token.isupper())


_CASED = re.compile(r"@\d+|\w+(?:[-'’]\w+)*|[^\w\s]")
_MENTION = re.compile(r"@\s*(\d+)")


def tokenize_cased(text: str) -> list[str]:
    """The tokens of text.tokenize before lower-casing (same boundaries), for capitalisation tests."""
    return _CASED.findall(_MENTION.sub(r"@\1", text))
