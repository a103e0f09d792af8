"""ReDial's conversation side on the tiny fixture: the HRED trains only its own parameters, the movie
switch's mixture is a distribution whose movie part is the recommender's, step-by-step decoding
scores what teacher forcing scores, and it still runs without mention tokens or with empty turns."""
import copy
import dataclasses

import pytest
import torch

from conftest import check_generation, check_incremental_decoding, model_defaults
from crsbench.datasets.instances import build_instances
from crsbench.models.base import CONV
from crsbench.registry import get_model

ReDial = get_model("redial")
DEFAULTS = model_defaults(ReDial)


@pytest.fixture
def bundle(tiny_bundle):
    """The fixture with its "@<movieId>" tokens mapped to items (item 5's token is not in the vocab)."""
    tiny_bundle.mention_items = {f"@{100 + i}": i for i in range(6)}
    return tiny_bundle


def _model(bundle):
    torch.manual_seed(0)
    config = copy.deepcopy(DEFAULTS)
    # the fixture's word2vec size; context != decoder size, so the projection is exercised
    config["conv"].update(dim=8, utterance_hidden=10, context_hidden=12, decoder_hidden=14)
    return ReDial(config, bundle)


def _samples(bundle):
    return build_instances(bundle)["train"].samples


def test_mention_tokens_map_to_items(bundle):
    model = _model(bundle)
    vocab = bundle.vocab
    assert model.item_columns.tolist() == [0, 1, 2, 3, 4]
    assert model.dialogue.decoder.item_vocab_ids.tolist() == [vocab.index[f"@{100 + i}"] for i in range(5)]


def test_stages_and_the_conv_stage_leaves_the_recommender_out(bundle):
    model = _model(bundle)
    rec, conv = model.stages()
    assert [rec.name, conv.name] == ["rec", "conv"] and conv.task == CONV
    recommender = {id(p) for m in (model.encoder, model.decoder) for p in m.parameters()}
    conv_params = {id(p) for p in conv.parameters()}
    rec_params = {id(p) for p in rec.parameters()}
    assert conv_params and not conv_params & recommender
    assert rec_params == recommender
    assert {id(p) for p in model.dialogue.parameters()} == conv_params


def test_conv_loss_trains_encoder_decoder_and_switch(bundle):
    model = _model(bundle)
    loss = model.conv_loss(model.collate(_samples(bundle), CONV))
    assert torch.isfinite(loss)
    loss.backward()
    dialogue = model.dialogue
    for module in (dialogue.embedding, dialogue.encoder.utterance, dialogue.encoder.context,
                   dialogue.decoder.init, dialogue.decoder.gru, dialogue.decoder.output,
                   dialogue.decoder.switch):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), module
    assert all(p.grad is None for m in (model.encoder, model.decoder) for p in m.parameters())


def test_mixture_is_a_distribution_and_its_movie_part_is_the_recommenders(bundle):
    model = _model(bundle).eval()
    batch = model.collate(_samples(bundle), CONV)
    with torch.no_grad():
        log_probs = model.teacher_forced_log_probs(batch)
        assert torch.allclose(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]), atol=1e-5)
        model.dialogue.decoder.switch.bias.fill_(50.0)          # s ~ 1: only movies
        movies = model.teacher_forced_log_probs(batch)[..., model.dialogue.decoder.item_vocab_ids].exp()
        expected = torch.softmax(model.recommend(batch)[:, model.item_columns], dim=-1)
    assert torch.allclose(movies, expected.unsqueeze(1).expand_as(movies), atol=1e-5)


def test_incremental_decoding_scores_what_teacher_forcing_scores(bundle):
    model = _model(bundle).eval()
    batch = model.collate(_samples(bundle), CONV)
    check_incremental_decoding(model, batch)


def _generates(model, samples):
    model.eval()
    check_generation(model, model.collate(samples, CONV), len(samples))


def test_greedy_and_beam_generation(bundle):
    _generates(_model(bundle), _samples(bundle))


def test_without_mention_tokens_it_is_a_plain_hred(tiny_bundle):
    assert not tiny_bundle.mention_items
    model = _model(tiny_bundle)
    assert model.dialogue.decoder.switch is None and len(model.item_columns) == 0
    samples = _samples(tiny_bundle)
    conv = model.stages()[1]
    optimizer = torch.optim.Adam(conv.parameters(), lr=1e-2)
    batch = model.collate(samples, CONV)
    first = model.conv_loss(batch)
    for _ in range(5):
        optimizer.zero_grad()
        loss = model.conv_loss(batch)
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss) and model.conv_loss(batch) < first
    with torch.no_grad():
        log_probs = model.eval().teacher_forced_log_probs(batch)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]), atol=1e-5)
    _generates(model, samples)


@pytest.mark.parametrize("emptied", ["one", "all"])
def test_context_turns_without_tokens(bundle, emptied):
    samples = _samples(bundle)
    changed = []
    for s in samples:
        context = [dataclasses.replace(t, tokens=[]) if emptied == "all" or i == 0 else t
                   for i, t in enumerate(s.context)]
        changed.append(dataclasses.replace(s, context=context))
    model = _model(bundle)
    batch = model.collate(changed, CONV)
    assert (batch["turn_lengths"] == 0).any()
    loss = model.conv_loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.dialogue.parameters() if p.grad is not None)
    _generates(model, changed)


def test_context_keeps_the_most_recent_turns_and_the_first_tokens(bundle):
    model = _model(bundle)
    model.config["conv"].update(max_context_turns=2, max_turn_tokens=2)
    sample = max(_samples(bundle), key=lambda s: len(s.context))
    assert len(sample.context) == 3
    batch = model.collate([sample], CONV)
    assert batch["num_turns"].tolist() == [2]
    expected = [bundle.vocab.encode(t.tokens[:2]) for t in sample.context[-2:]]
    assert [row[:n].tolist() for row, n in zip(batch["turns"][0], batch["turn_lengths"][0])] == expected
