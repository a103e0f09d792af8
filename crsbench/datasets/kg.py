"""Building knowledge graphs the way the original KGSF code does, as edge lists."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from crsbench.datasets.types import KnowledgeGraph

SELF_LOOP = "self_loop"


RELEASE_SELF_LOOP_ID = 185     # the release's self-loop relation id (a real relation's id, too)


def build_entity_kg(triples: Iterable[tuple[int, int, int]], num_nodes: int,
                    relation_names: Sequence[str], node_names: Sequence[str],
                    min_relation_edges: int, form: str = "crsbench") -> KnowledgeGraph:
    """Entity KG as KGSF builds it: a self-loop relation on every node, every (head, relation, tail)
    triple in both directions (a triple whose head is its tail, too, as the original does), and
    relations with <= `min_relation_edges` directed edges dropped (the self-loop relation counts
    like any other); the surviving relations are renumbered in order of first appearance. Unlike
    the original, the self-loop is a relation of its own instead of sharing id 185 with a real one.

    `form="release"` builds the list as the release's `_edge_list(kg, n, hop=2)` does: its loop
    runs twice, so every edge (self-loops included) is listed twice and counted twice before the
    cut (more relations survive it), and triples whose head is their tail, or of relation 185, are
    left out."""
    if form not in ("crsbench", "release"):
        raise ValueError(f"form must be 'crsbench' or 'release', got {form!r}")
    triples = list(triples)
    if form == "release":
        triples = [(h, r, t) for h, r, t in triples if h != t and r != RELEASE_SELF_LOOP_ID]
    heads: list[int] = []
    tails: list[int] = []
    rels: list[int] = []
    for _ in range(2 if form == "release" else 1):
        heads += range(num_nodes)
        tails += range(num_nodes)
        rels += [-1] * num_nodes                  # -1 marks the self-loop relation
        for head, rel, tail in triples:
            heads += (head, tail)
            tails += (tail, head)
            rels += (rel, rel)
    counts = Counter(rels)
    kept: dict[int, int] = {}
    for rel in rels:
        if rel not in kept and counts[rel] > min_relation_edges:
            kept[rel] = len(kept)
    rel_arr = np.asarray(rels, dtype=np.int64)
    keep = np.isin(rel_arr, np.fromiter(kept, dtype=np.int64, count=len(kept)))
    new_ids = np.vectorize(kept.get, otypes=[np.int64])(rel_arr[keep]) if keep.any() else rel_arr[:0]
    edge_index = np.stack([np.asarray(heads, dtype=np.int64)[keep], np.asarray(tails, dtype=np.int64)[keep]])
    names = [SELF_LOOP if r == -1 else relation_names[r] for r in kept]
    return KnowledgeGraph(num_nodes, edge_index, new_ids, names, list(node_names))


def build_undirected_graph(pairs: Iterable[tuple[int, int]], num_nodes: int,
                           node_names: Sequence[str], relation: str = "related") -> KnowledgeGraph:
    """A one-relation undirected graph (each pair in both directions, no duplicates, no self-loops)."""
    edges = {(a, b) for a, b in pairs if a != b}
    edges |= {(b, a) for a, b in edges}
    ordered = sorted(edges)
    edge_index = np.array(ordered, dtype=np.int64).T.reshape(2, -1)
    return KnowledgeGraph(num_nodes, edge_index, np.zeros(len(ordered), dtype=np.int64), [relation],
                          list(node_names))
