"""`model.conv.embedding_norm` (issue 12 §3): word2vec's norms grow with word frequency, and the
tied output layer turns that into a frequency prior; `equal` removes the prior and keeps directions."""
from collections import Counter

import pytest
import torch

from baselines.transformer import Transformer
from crsbench.errors import ConfigError
from crsbench.models.conversation import equal_norms
from conftest import model_defaults


def _transformer(bundle, norm: str) -> Transformer:
    settings = model_defaults(Transformer)
    settings["conv"].update(dim=bundle.word_embeddings.shape[1], ffn=8, embedding_norm=norm)
    return Transformer(settings, bundle)


def test_word2vec_keeps_the_vectors_and_equal_keeps_directions_at_one_norm(tiny_bundle):
    vectors = torch.from_numpy(tiny_bundle.word_embeddings)
    raw = _transformer(tiny_bundle, "word2vec").generator.embedding.weight.detach()
    assert torch.equal(raw[1:], vectors[1:]) and not raw[0].any()            # PAD_ID stays zero
    equal = _transformer(tiny_bundle, "equal").generator.embedding.weight.detach()[1:]
    norms = equal.norm(dim=1)
    assert torch.allclose(norms, vectors.norm(dim=1).mean().expand_as(norms), rtol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(equal, vectors[1:], dim=1)
    assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-6)


def test_an_unknown_embedding_norm_is_a_config_error_naming_the_key(tiny_bundle):
    with pytest.raises(ConfigError, match="model.conv.embedding_norm"):
        _transformer(tiny_bundle, "unit")


def test_on_redial_word2vec_norms_follow_frequency_and_equal_removes_that(redial):
    """The premise of the setting, on the shared data: the response words' frequency ranks and
    their word2vec norms agree (Spearman > 0.5); after `equal_norms` every norm is the same."""
    bundle = redial.bundle
    counts = Counter(t for c in bundle.splits["train"] for turn in c.turns for t in turn.tokens)
    ids = [bundle.vocab.index[w] for w, n in counts.items() if w in bundle.vocab.index and n >= 2]
    vectors = torch.from_numpy(bundle.word_embeddings)[ids]
    freq = torch.tensor([counts[bundle.vocab.tokens[i]] for i in ids], dtype=torch.float64)
    rank = lambda x: x.argsort().argsort().double()  # noqa: E731
    spearman = torch.corrcoef(torch.stack([rank(freq), rank(vectors.norm(dim=1).double())]))[0, 1]
    assert spearman > 0.5, f"word2vec norms no longer track frequency (Spearman {spearman:.2f})"
    norms = equal_norms(vectors).norm(dim=1)
    assert float(norms.max() - norms.min()) < 1e-3 * float(norms.mean())
