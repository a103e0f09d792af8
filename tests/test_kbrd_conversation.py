"""KBRD's conversation side on the tiny fixture: the vocabulary bias from the user vector trains,
the recommender stays frozen, and cached decoding scores what teacher forcing scores. Also, for KBRD
and the Transformer: the loss over gold positions only equals Eq. 19 over the full distribution."""
import copy

import pytest
import torch

from baselines.kbrd import KBRD
from conftest import check_incremental_decoding, model_defaults
from crsbench.datasets.instances import build_instances
from crsbench.models.base import CONV
from crsbench.models.conversation import generation_loss, sequence_nll
from crsbench.registry import get_model

DEFAULTS = model_defaults(KBRD)


def _model(bundle):
    torch.manual_seed(0)
    config = copy.deepcopy(DEFAULTS)
    config["conv"]["dim"] = 8
    config["conv"]["vocab_bias_hidden"] = 16
    return KBRD(config, bundle)


def test_conversation_stage_trains_the_bias_not_the_recommender(tiny_bundle):
    model = _model(tiny_bundle)
    rec, conv = model.stages()
    assert (rec.name, conv.name, conv.task) == ("rec", "conv", CONV)
    trained = {id(p) for p in conv.parameters()}
    recommender = [model.item_bias, *model.entity_encoder.parameters(), *model.user_attention.parameters()]
    assert not trained & {id(p) for p in recommender}
    assert {id(p) for p in rec.parameters()} == {id(p) for p in recommender}
    batch = model.collate(build_instances(tiny_bundle)["train"].samples, CONV)
    model.conv_loss(batch).backward()
    assert all(p.grad is None for p in recommender)          # computed without gradients
    assert model.vocab_bias[-1].weight.grad.abs().sum() > 0


def test_the_bias_depends_on_the_user(tiny_bundle):
    model = _model(tiny_bundle).eval()
    samples = build_instances(tiny_bundle)["train"].samples
    batch = model.collate(samples, CONV)
    with torch.no_grad():
        state, size = model.decode_start(batch)
        bias = state.extras["bias"]
    assert bias.shape == (size, len(tiny_bundle.vocab))
    first, other = 0, next(i for i, s in enumerate(samples)
                           if set(s.context_entities) != set(samples[0].context_entities))
    assert not torch.allclose(bias[first], bias[other])


def test_incremental_decoding_matches_teacher_forcing_and_generates(tiny_bundle):
    model = _model(tiny_bundle).eval()
    batch = model.collate(build_instances(tiny_bundle)["train"].samples, CONV)
    check_incremental_decoding(model, batch)
    with torch.no_grad(), model.inference():
        beam = model.generate(batch, 5, 3)
    assert len(beam) == batch["context"].shape[0] and all(1 <= len(r) <= 5 for r in beam)


@pytest.mark.parametrize("name", ["kbrd", "transformer"])
def test_loss_on_gold_positions_equals_the_loss_over_the_full_distribution(tiny_bundle, name):
    """conv_loss scores only unpadded positions (packed_nll) and equals Eq. 19 over [B, T, V]."""
    cls = get_model(name)
    config = model_defaults(cls)
    config["conv"]["dim"] = 8
    torch.manual_seed(0)
    model = cls(config, tiny_bundle).eval()
    batch = model.collate(build_instances(tiny_bundle)["train"].samples, CONV)
    assert not batch["response_mask"].all()
    full = generation_loss(model.teacher_forced_log_probs(batch), batch["response"], batch["response_mask"])
    assert torch.allclose(full, model.conv_loss(batch), atol=1e-6)
    nll, count = model.response_nll(batch)
    ref, ref_count = sequence_nll(model.teacher_forced_log_probs(batch), batch["response"], batch["response_mask"])
    assert torch.equal(count, ref_count) and torch.allclose(nll, ref, atol=1e-5)
