"""Finding the movies a person names in free text ("have you seen the dark knight?"), for chat.

Exact matching: the longest span (left to right, no overlaps) whose normalised tokens equal an
item's title, with or without its year ("Inception (2010)" -> "inception", "inception 2010") and
without a leading article. A title whose words are all short function words or that is a single
word ("Up", "Her", "It") must be typed capitalised and not as the message's first word, unless the
message is just the title. Fuzzy matching (fuzzywuzzy ratio >= cutoff) catches misspellings of
titles of 2+ words, blocked by first letter and length so it stays fast. "@<movieId>" tokens are
items already.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Mapping

from fuzzywuzzy import fuzz

from crsbench.datasets.entity_linker import tokenize_cased
from crsbench.datasets.text import is_mention, tokenize

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLES = ("the", "a", "an")
_FUNCTION_WORDS = frozenset(
    "a an the and or but of in on at to for with from by is it its i me my you your he she we they "
    "this that these those be was were are am do did have has had not no so as if up out".split())


def _keys(title: str) -> list[tuple[str, ...]]:
    """Normalised token tuples a person may type for `title`."""
    match = _YEAR.search(title)
    bare = _YEAR.sub("", title)
    variants = [tuple(tokenize(bare))]
    if match:
        variants.append(variants[0] + (match.group(1),))
    out = []
    for key in variants:
        if key:
            out.append(key)
        if len(key) > 1 and key[0] in _ARTICLES:
            out.append(key[1:])
    return out


class TitleLinker:
    """Links movie titles in a message to item entity ids."""

    def __init__(self, titles: Mapping[int, str], mention_items: Mapping[str, int], max_ngram: int = 8,
                 fuzzy_cutoff: int = 88) -> None:
        self.names: dict[tuple[str, ...], int] = {}
        for item in sorted(titles):               # deterministic: the lowest id wins a shared title
            for key in _keys(titles[item]):
                self.names.setdefault(key, item)
        self.mention_items = dict(mention_items)
        self.max_ngram, self.fuzzy_cutoff = max_ngram, fuzzy_cutoff
        self._blocks: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for key, item in self.names.items():
            if len(key) >= 2 and not self._needs_capitals(key):
                text = " ".join(key)
                self._blocks[text[0]].append((text, item))

    @staticmethod
    def _needs_capitals(key: tuple[str, ...]) -> bool:
        words = [t for t in key if any(ch.isalnum() for ch in t)]
        return len(words) <= 1 or all(t in _FUNCTION_WORDS for t in words)

    def _accept(self, key: tuple[str, ...], cased: list[str] | None, i: int, n: int) -> bool:
        if not self._needs_capitals(key):
            return True
        if cased is None:
            return False
        span = cased[i:i + len(key)]
        capitalised = all(t[:1].isupper() for t in span if t[:1].isalpha())
        return capitalised and (i > 0 or len(key) == n)

    def link(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, item) token spans over `tokenize(text)`, in order, not overlapping."""
        tokens = tokenize(text)
        cased = tokenize_cased(text)
        if len(cased) != len(tokens):
            cased = None
        spans: list[tuple[int, int, int]] = []
        i, n = 0, len(tokens)
        while i < n:
            if is_mention(tokens[i]):
                item = self.mention_items.get(tokens[i])
                if item is not None:
                    spans.append((i, i + 1, item))
                i += 1
                continue
            found = 0
            for size in range(min(self.max_ngram, n - i), 0, -1):
                key = tuple(tokens[i:i + size])
                item = self.names.get(key)
                if item is not None and self._accept(key, cased, i, n):
                    spans.append((i, i + size, item))
                    found = size
                    break
            if not found:
                found = self._fuzzy_at(tokens, i, spans)
            i += found or 1
        return spans

    def _fuzzy_at(self, tokens: list[str], i: int, spans: list[tuple[int, int, int]]) -> int:
        """A misspelt title of 2-6 words starting at token i, or 0."""
        if tokens[i] in _FUNCTION_WORDS or not tokens[i][:1].isalpha():
            return 0
        best = (0, None, 0)
        for size in range(min(6, len(tokens) - i), 1, -1):
            span = " ".join(tokens[i:i + size])
            for name, item in self._blocks.get(span[0], ()):
                if abs(len(name) - len(span)) > max(2, len(span) // 6):
                    continue
                score = fuzz.ratio(span, name)
                if score > best[0]:
                    best = (score, item, size)
        score, item, size = best
        if item is None or score < self.fuzzy_cutoff:
            return 0
        spans.append((i, i + size, item))
        return size
