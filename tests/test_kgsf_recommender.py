"""KGSF's recommender side on the tiny fixture: shapes, ablation switches, empty contexts, stages."""
import copy

import pytest
import torch

from conftest import model_defaults
from crsbench.datasets.instances import build_instances
from crsbench.models.kgsf import KGSF
from crsbench.models.layers import AttentionPooling

DEFAULTS = model_defaults(KGSF)
DEFAULTS["conv"]["dim"] = 8          # the fixture's word2vec size


def _model(bundle, **changes):
    torch.manual_seed(0)
    return KGSF({**DEFAULTS, **changes}, bundle)


def test_scores_cover_every_candidate_and_losses_are_finite(tiny_bundle):
    model = _model(tiny_bundle)
    batch = model.collate(build_instances(tiny_bundle)["train"].rec, "rec")
    scores = model.recommend(batch)
    assert scores.shape == (5, tiny_bundle.num_items)
    losses = model.rec_loss(batch)
    assert set(losses) == {"loss", "rec", "mim"}
    assert torch.isclose(losses["loss"], losses["rec"] + 0.025 * losses["mim"])
    assert all(torch.isfinite(v) for v in losses.values())


def test_empty_context_pools_to_zero_without_nan(tiny_bundle):
    pool = AttentionPooling(4)
    out = pool(torch.randn(2, 3, 4), torch.tensor([[False] * 3, [True, False, False]]))
    assert torch.equal(out[0], torch.zeros(4))
    assert torch.isfinite(out).all()
    model = _model(tiny_bundle)
    inst = build_instances(tiny_bundle)["train"]
    empty = copy.copy(inst.rec[0])
    empty.sample = copy.copy(empty.sample)
    empty.sample.context_entities, empty.sample.context_words = [], []
    batch = model.collate([empty], "rec")
    loss = model.rec_loss(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_ablations_change_the_model(tiny_bundle):
    full = _model(tiny_bundle)
    assert [s.name for s in full.stages()] == ["pretrain", "rec", "conv"]
    no_mim = _model(tiny_bundle, mim=False)
    assert [s.name for s in no_mim.stages()] == ["rec", "conv"] and no_mim.mim is None
    no_db = _model(tiny_bundle, entity_kg=False)
    assert not hasattr(no_db.entity_kg_encoder, "rgcn")
    batch = no_db.collate(build_instances(tiny_bundle)["train"].rec, "rec")
    assert torch.isfinite(no_db.rec_loss(batch)["loss"])


def test_pretraining_trains_only_the_kg_encoders(tiny_bundle):
    model = _model(tiny_bundle)
    pretrain = model.stages()[0]
    trained = {id(p) for p in pretrain.parameters()}
    recommender = {id(p) for p in model.recommender.parameters()}
    assert trained and not trained & recommender
    assert {id(p) for p in model.entity_kg_encoder.parameters()} <= trained


def test_inference_scope_encodes_the_graphs_once_with_the_same_scores(tiny_bundle):
    model = _model(tiny_bundle).eval()
    batch = model.collate(build_instances(tiny_bundle)["test"].rec, "rec")
    calls = {"n": 0}
    forward = model.entity_kg_encoder.forward
    def counting():
        calls["n"] += 1
        return forward()
    model.entity_kg_encoder.forward = counting
    with torch.no_grad():
        plain = model.recommend(batch)
        calls["n"] = 0
        with model.inference():
            cached = [model.recommend(batch) for _ in range(3)]
    assert calls["n"] == 1
    assert all(torch.equal(plain, c) for c in cached)
    assert model._knowledge_scope is None


def test_mim_loss_balances_positives_and_negatives():
    from crsbench.models.kgsf.mim import MutualInformationMaximization
    torch.manual_seed(0)
    mim = MutualInformationMaximization(4)
    words, entities = torch.randn(5, 4), torch.randn(1000, 4)
    ids, mask = torch.tensor([[0, 1]]), torch.tensor([[True, True]])
    positives = torch.zeros(1, 1000)
    positives[0, 3] = 1.0
    with torch.no_grad():
        mim.transform.weight.zero_()
        mim.bias.fill_(0.0)                          # every logit 0: each mean BCE term is log 2
        assert torch.isclose(mim(words, entities, ids, mask, positives), torch.tensor(2 * 0.6931), atol=1e-3)
        mim.bias.fill_(-20.0)                        # all "no": only the positive side pays, ~20
        assert 19 < mim(words, entities, ids, mask, positives).item() < 21
        no_words = mim(words, entities, ids, torch.tensor([[False, False]]), positives)
        assert no_words.item() == 0.0
