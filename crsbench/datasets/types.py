"""The model-independent representation every dataset is mapped into.

raw files -> Conversation/Turn + KnowledgeGraph + Vocabulary (this module) -> evaluation samples
(crsbench/datasets/instances.py) -> a model's own batching. Every id here is a plain int so the whole
bundle caches as builtins + numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SEEKER = "seeker"
RECOMMENDER = "recommender"
SPLITS = ("train", "valid", "test")


@dataclass
class Turn:
    """One turn: consecutive messages of the same speaker merged (as the original KGSF code does)."""

    role: str                 # SEEKER or RECOMMENDER
    text: str                 # raw text, movie mentions kept as "@<movieId>"
    tokens: list[str]         # lower-cased word tokens; a movie mention is one token "@<movieId>"
    items: list[int]          # entity ids of the movies mentioned (candidate items), in order, no repeats
    entities: list[int]       # entity ids linked from the text (not the items above), in order, no repeats
    words: list[int]          # ConceptNet word ids of the non-stopword tokens, in order, no repeats


@dataclass
class Conversation:
    """A dialogue between a seeker and a recommender."""

    conv_id: str
    turns: list[Turn]
    # Turn indices that become evaluation/training samples. None: every recommender turn with
    # earlier context (ReDial). OpenDialKG lists only the turns that carry a recommendation label.
    sample_turns: list[int] | None = None
    # Seeker's answers about a movie (entity id -> {"suggested","seen","liked"}), where the data has them.
    item_feedback: dict[int, dict[str, int]] = field(default_factory=dict)


@dataclass
class KnowledgeGraph:
    """A directed multi-relational graph as edge lists (both directions and self-loops already added)."""

    num_nodes: int
    edge_index: np.ndarray    # int64 [2, E]: row 0 = source (head), row 1 = target (tail)
    edge_type: np.ndarray     # int64 [E], in [0, num_relations)
    relation_names: list[str]
    node_names: list[str]     # readable name per node id

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


@dataclass
class Vocabulary:
    """Word vocabulary built on the train split. Ids 0..3 are the special tokens below."""

    tokens: list[str]
    PAD = "__pad__"
    START = "__start__"
    END = "__end__"
    UNK = "__unk__"
    SPECIALS = (PAD, START, END, UNK)
    PAD_ID, START_ID, END_ID, UNK_ID = range(4)          # their ids: SPECIALS come first, in this order

    def __post_init__(self) -> None:
        if tuple(self.tokens[:len(self.SPECIALS)]) != self.SPECIALS:
            from crsbench.errors import DataError
            raise DataError(f"a vocabulary must start with {', '.join(self.SPECIALS)} (their ids are fixed), "
                            f"got {self.tokens[:4]}", hint="rebuild the preprocessing cache (delete it)")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.index.get(token, self.UNK_ID)

    def encode(self, tokens: list[str]) -> list[int]:
        get = self.index.get
        unk = self.UNK_ID
        return [get(t, unk) for t in tokens]


@dataclass
class DatasetBundle:
    """Everything a model may read about a dataset, identical for every model."""

    name: str
    splits: dict[str, list[Conversation]]    # "train" / "valid" / "test"
    entity_kg: KnowledgeGraph                # DBpedia subgraph (ReDial) or the dataset's own KG
    word_kg: KnowledgeGraph                  # ConceptNet subgraph
    items: list[int]                         # candidate item entity ids; scores are over this order
    item_titles: dict[int, str]              # item entity id -> readable title, for output
    vocab: Vocabulary
    word_embeddings: np.ndarray              # float32 [len(vocab), dim], word2vec trained on train
    fingerprint: str                         # hash of the raw files and preprocessing settings (provenance.py)
    stats: dict[str, int | float] = field(default_factory=dict)
    # movie-mention token ("@84001") -> item entity id, where the text marks items with such tokens
    # (ReDial); a generated mention becomes a real recommended item and is shown as its title
    mention_items: dict[str, int] = field(default_factory=dict)
    data_files: str = ""                     # hash of the raw files alone: the data version
    content: str = ""                        # hash of the preprocessed result itself (cache.content_digest)

    def __post_init__(self) -> None:
        self.item_index = {e: i for i, e in enumerate(self.items)}

    @property
    def num_items(self) -> int:
        return len(self.items)

    def mention_titles(self) -> dict[str, str]:
        """Movie-mention token -> readable title, for text output."""
        return {token: self.item_titles.get(item, token) for token, item in self.mention_items.items()}
