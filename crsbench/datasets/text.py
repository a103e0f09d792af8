"""Tokenisation shared by every dataset: an nltk regular-expression tokenizer (no data download,
about 10x faster than nltk.word_tokenize), lower-cased, with movie mentions "@<id>" as one token."""
from __future__ import annotations

import re
from typing import Mapping

from nltk.tokenize import RegexpTokenizer

_MENTION = re.compile(r"@\s*(\d+)")
# A movie mention, a word with inner hyphens/apostrophes ("spider-man", "don't"), or one symbol.
_tokenizer = RegexpTokenizer(r"@\d+|\w+(?:[-'’]\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of `text`; "@123" (or "@ 123") becomes the single token "@123"."""
    return _tokenizer.tokenize(_MENTION.sub(r"@\1", text).lower())


def is_mention(token: str) -> bool:
    """True for a movie-mention token such as "@84001"."""
    return len(token) > 1 and token[0] == "@" and token[1:].isdigit()


_NO_SPACE_BEFORE = frozenset(".,!?;:)]}%'’")
_NO_SPACE_AFTER = frozenset("([{$")


def detokenize(tokens: list[str], mention_titles: Mapping[str, str] | None = None) -> str:
    """Readable text from word tokens: no space before closing punctuation, and each movie-mention
    token replaced by its title where `mention_titles` knows it ("@84001" -> "Inception (2010)")."""
    out = ""
    for token in tokens:
        word = mention_titles.get(token, token) if mention_titles and is_mention(token) else token
        if out and token not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
            out += " "
        out += word
    return out


def render_mentions(text: str, mention_titles: Mapping[str, str]) -> str:
    """Raw text with every "@<movieId>" it knows replaced by the movie's title."""
    return _MENTION.sub(lambda m: mention_titles.get(f"@{m.group(1)}", m.group(0)), text)
