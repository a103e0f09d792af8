"""Tokenisation shared by every dataset: an nltk regular-expression tokenizer (no data download,
about 10x faster than nltk.word_tokenize), lower-cased, with movie mentions "@<id>" as one token."""
from __future__ import annotations

import re

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
