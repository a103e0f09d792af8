"""KGSF's conversation module (§4.4) on the tiny fixture: Eq. 18 is a distribution, the copy branch
trains (unless faithful_original), padding is ignored, the KG module stays frozen, ablations switch
parts off, and step-by-step decoding scores exactly what teacher forcing scores."""
import copy

import pytest
import torch

from conftest import check_generation, check_incremental_decoding, model_defaults
from crsbench.datasets.instances import build_instances
from crsbench.models.base import CONV
from crsbench.models.conversation import generation_loss, sequence_nll
from crsbench.models.kgsf import KGSF

DEFAULTS = model_defaults(KGSF)


def _model(bundle, **changes):
    torch.manual_seed(0)
    config = copy.deepcopy(DEFAULTS)
    config["conv"]["dim"] = 8          # the fixture's word2vec size
    config.update(changes)
    return KGSF(config, bundle)


def _batch(model, bundle):
    return model.collate(build_instances(bundle)["train"].samples, CONV)


@pytest.mark.parametrize("faithful", [False, True])
def test_output_is_a_distribution(tiny_bundle, faithful):
    model = _model(tiny_bundle, faithful_original=faithful).eval()
    batch = _batch(model, tiny_bundle)
    with torch.no_grad():
        log_probs = model.teacher_forced_log_probs(batch)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]), atol=1e-5)


@pytest.mark.parametrize("faithful", [False, True])
def test_loss_on_gold_positions_equals_the_loss_over_the_full_distribution(tiny_bundle, faithful):
    """The loss scores only unpadded positions (packed_nll); value and gradients are those of
    Eq. 19 over the full [B, T, V] distribution."""
    model = _model(tiny_bundle, faithful_original=faithful).eval()      # no dropout: comparable
    mask = torch.zeros(len(tiny_bundle.vocab), dtype=torch.bool)
    mask[::2] = True
    model.generator.set_copyable(mask)
    batch = _batch(model, tiny_bundle)
    params = [p for p in model.generator.parameters()]
    full = generation_loss(model.teacher_forced_log_probs(batch, training=True), batch["response"],
                           batch["response_mask"])
    packed = model.conv_loss(batch)
    assert torch.allclose(full, packed, atol=1e-6)
    grads_full = torch.autograd.grad(full, params, allow_unused=True)
    grads_packed = torch.autograd.grad(model.conv_loss(batch), params, allow_unused=True)
    for a, b in zip(grads_full, grads_packed):
        assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, atol=1e-6))
    nll, count = model.response_nll(batch)
    gold = batch["response"] != 0
    ref, ref_count = sequence_nll(model.teacher_forced_log_probs(batch), batch["response"], gold)
    assert torch.equal(count, ref_count) and torch.allclose(nll, ref, atol=1e-5)


def test_copy_branch_trains_and_only_the_conversation_module_is_in_the_stage(tiny_bundle):
    model = _model(tiny_bundle)
    stage = model.stages()[-1]
    assert stage.name == "conv" and stage.task == CONV
    trained = {id(p) for p in stage.parameters()}
    for module in (model.word_kg_encoder, model.entity_kg_encoder, model.recommender):
        assert not any(id(p) in trained for p in module.parameters())
    # mark only the copy-branch tokens as copyable so the fixture's targets exercise it
    model.generator.set_copyable(torch.ones(len(tiny_bundle.vocab), dtype=torch.bool))
    model.conv_loss(_batch(model, tiny_bundle)).backward()
    assert model.generator.copy_output.weight.grad.abs().sum() > 0
    assert model.generator.copy_hidden.weight.grad.abs().sum() > 0


def test_faithful_original_never_trains_the_copy_branch_and_counts_padding(tiny_bundle):
    model = _model(tiny_bundle, faithful_original=True)
    model.generator.set_copyable(torch.ones(len(tiny_bundle.vocab), dtype=torch.bool))
    batch = _batch(model, tiny_bundle)
    assert batch["response_mask"].all()                 # padding positions are targets
    model.conv_loss(batch).backward()
    grad = model.generator.copy_output.weight.grad
    assert grad is None or grad.abs().sum() == 0
    fixed = _model(tiny_bundle)
    assert not fixed.collate(build_instances(tiny_bundle)["train"].samples, CONV)["response_mask"].all()


def test_padding_does_not_change_a_samples_loss(tiny_bundle):
    model = _model(tiny_bundle).eval()
    samples = build_instances(tiny_bundle)["train"].samples
    short = min(samples, key=lambda s: len(s.response.tokens))
    long = max(samples, key=lambda s: len(s.response.tokens))
    assert len(short.response.tokens) < len(long.response.tokens)
    with torch.no_grad():
        alone, n_alone = model.response_nll(model.collate([short], CONV))
        padded, n_padded = model.response_nll(model.collate([short, long], CONV))
    assert n_alone[0] == n_padded[0]
    # the context differs in padding too; both are masked, so the NLL is the same
    assert torch.allclose(alone[0], padded[0], atol=1e-4)


def test_incremental_decoding_scores_what_teacher_forcing_scores(tiny_bundle):
    model = _model(tiny_bundle).eval()
    batch = _batch(model, tiny_bundle)
    check_incremental_decoding(model, batch)


def test_ablations_remove_their_parts(tiny_bundle):
    full = _model(tiny_bundle)
    no_kgd = _model(tiny_bundle, kg_decoder=False)
    no_copy = _model(tiny_bundle, copy=False)
    assert full.generator.transformer.decoder.num_memories == 3
    assert no_kgd.generator.transformer.decoder.num_memories == 1
    assert not hasattr(no_copy.generator, "copy_output")
    for model in (no_kgd, no_copy):
        loss = model.conv_loss(_batch(model, tiny_bundle))
        assert torch.isfinite(loss)


def test_generation_greedy_and_beam_with_empty_kg_context(tiny_bundle):
    model = _model(tiny_bundle).eval()
    samples = build_instances(tiny_bundle)["train"].samples
    batch = model.collate(samples, CONV)
    batch["words_mask"][:] = False                      # no linked word or entity anywhere
    batch["entities_mask"][:] = False
    check_generation(model, batch, len(samples))


def test_kg_encodings_are_reused_until_their_weights_change(tiny_bundle):
    model = _model(tiny_bundle)
    first = model.knowledge(frozen=True)
    assert model.knowledge(frozen=True)[1] is first[1]
    model.generator.copy_output.weight.data.add_(1.0)      # not a KG weight: still reused
    assert model.knowledge(frozen=True)[1] is first[1]
    with torch.no_grad():
        next(model.entity_kg_encoder.parameters()).add_(1.0)
    second = model.knowledge(frozen=True)
    assert second[1] is not first[1] and not torch.equal(second[1], first[1])
