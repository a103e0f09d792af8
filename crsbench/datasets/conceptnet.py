"""The word-oriented KG (ConceptNet one-hop subgraph) and the linking of tokens to its words."""
from __future__ import annotations

from pathlib import Path

from crsbench.datasets.jsonl import read_json, read_text
from crsbench.datasets.kg import build_undirected_graph
from crsbench.datasets.types import KnowledgeGraph
from crsbench.errors import DataError

EDGES_FILE = "conceptnet/conceptnet_one_hop_edges.txt"
INDEX_FILE = "conceptnet/conceptnet_one_hop_key2index.json"
STOPWORDS_FILE = "stopwords.txt"


def read_stopwords(path: Path) -> frozenset[str]:
    """One stopword per line (KGSF's stopwords.txt)."""
    return frozenset(w.strip().lower() for w in read_text(path).splitlines() if w.strip())


def load_word_kg(edges_path: Path, index_path: Path, stopwords: frozenset[str]) -> tuple[KnowledgeGraph, dict[str, int]]:
    """ConceptNet as KGSF's GCN sees it: undirected, one relation, edges touching a stopword dropped.

    Returns the graph (nodes = the key index's words) and the word -> id index.
    """
    index = read_json(index_path)
    if not isinstance(index, dict) or not index:
        raise DataError(f"{index_path}: expected a non-empty JSON object word -> id", hint="replace the file")
    bad = next((w for w, i in index.items() if isinstance(i, bool) or not isinstance(i, int) or i < 0), None)
    if bad is not None:
        raise DataError(f"{index_path}: key '{bad}' maps to {index[bad]!r}, not a word id (an integer >= 0)",
                        hint="replace the file with the release's copy")
    num_nodes = max(index.values(), default=-1) + 1
    names = [""] * num_nodes
    for word, i in index.items():
        names[i] = word
    pairs = []
    lines = read_text(edges_path).splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DataError(f"{edges_path}:{lineno}: expected 'relation<TAB>word<TAB>word', got {line[:80]!r}",
                            hint="fix or delete that line")
        _, a, b = parts
        if a in stopwords or b in stopwords or a not in index or b not in index:
            continue
        pairs.append((index[a], index[b]))
    return build_undirected_graph(pairs, num_nodes, names), index


class WordLinker:
    """Maps tokens to ConceptNet word ids: a bigram key ("science_fiction") first, else the token,
    skipping stopwords, punctuation-only tokens and movie mentions."""

    def __init__(self, index: dict[str, int], stopwords: frozenset[str]) -> None:
        self.index = index
        self.stopwords = stopwords

    def link(self, tokens: list[str]) -> list[int]:
        """ConceptNet ids in order of first appearance, no repeats."""
        out: list[int] = []
        seen: set[int] = set()
        index, stop = self.index, self.stopwords
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if i + 1 < len(tokens):
                bigram = f"{token}_{tokens[i + 1]}"
                if bigram in index and bigram not in stop:
                    wid = index[bigram]
                    if wid not in seen:
                        seen.add(wid)
                        out.append(wid)
                    i += 2
                    continue
            if token not in stop and token in index and token[0] != "@":
                wid = index[token]
                if wid not in seen:
                    seen.add(wid)
                    out.append(wid)
            i += 1
        return out
