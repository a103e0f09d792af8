"""The conversation step of issue 12 §4 computes what the step it replaced computed: the reference
kept in benchmarks/conversation_step.py (crsbench at 7c2881c: every decoder position, copy scores
over the whole vocabulary) and `conv_loss` give equal losses and gradients, in float64 so that only
a real difference, not rounding, can fail. Also: packed decoding equals the full decoder."""
import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from conftest import model_defaults
from crsbench.datasets.instances import build_instances
from crsbench.models.base import CONV
from crsbench.registry import get_model

_spec = importlib.util.spec_from_file_location(
    "conversation_step", Path(__file__).resolve().parents[1] / "benchmarks" / "conversation_step.py")
step_benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(step_benchmark)


def _model(name, bundle):
    cls = get_model(name)
    config = copy.deepcopy(model_defaults(cls))
    config["conv"]["dim"] = 8
    config["conv"]["heads"] = 2
    torch.manual_seed(0)
    model = cls(config, bundle).double().eval()
    if name == "kgsf":              # half the vocabulary copyable: both branches of Eq. 18 score
        mask = torch.zeros(len(bundle.vocab), dtype=torch.bool)
        mask[::2] = True
        model.generator.set_copyable(mask)
    return model


@pytest.mark.parametrize("name", ["kgsf", "kbrd", "transformer"])
def test_loss_and_gradients_equal_the_reference_step(tiny_bundle, name):
    model = _model(name, tiny_bundle)
    batch = model.collate(build_instances(tiny_bundle)["train"].samples, CONV)
    assert not batch["response_mask"].all()             # padding that the packed decoder skips
    stage = next(s for s in model.stages() if s.task == CONV)
    params = list(dict.fromkeys(stage.parameters()))
    reference = step_benchmark.reference_loss(model, batch)
    loss = model.conv_loss(batch)
    assert abs(reference.item() - loss.item()) < 1e-10
    want = torch.autograd.grad(reference, params, allow_unused=True)
    got = torch.autograd.grad(loss, params, allow_unused=True)
    scale = max(g.abs().max().item() for g in want if g is not None)
    for a, b in zip(want, got):
        a = torch.zeros(1, dtype=torch.float64) if a is None else a
        b = torch.zeros(1, dtype=torch.float64) if b is None else b
        assert (a - b).abs().max().item() <= 1e-10 * scale


def test_reference_differs_when_the_model_does(tiny_bundle):
    """The comparison above can fail: a changed copy branch moves the loss away from the reference."""
    model = _model("kgsf", tiny_bundle)
    batch = model.collate(build_instances(tiny_bundle)["train"].samples, CONV)
    reference = step_benchmark.reference_loss(model, batch).item()
    with torch.no_grad():
        model.generator.copy_output.bias[model.generator.copy_ids[0]] += 5.0
    assert abs(step_benchmark.reference_loss(model, batch).item() - model.conv_loss(batch).item()) < 1e-10
    assert abs(model.conv_loss(batch).item() - reference) > 1e-4


def test_packed_decoder_states_equal_the_full_decoder(tiny_bundle):
    model = _model("transformer", tiny_bundle)
    batch = model.collate(build_instances(tiny_bundle)["train"].samples, CONV)
    keep = batch["response_mask"].clone()
    keep[0, 0] = False                                  # not a prefix: earlier positions still computed
    full, _ = model.decoder_states(batch)
    packed, _ = model.decoder_states(batch, keep=keep)
    assert packed.shape == (int(keep.sum()), full.shape[-1])
    assert torch.allclose(packed, full[keep], atol=1e-12)
