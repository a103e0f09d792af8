"""Every registered model builds, trains a step and ranks real test instances, on both datasets."""
import pytest
import torch

from crsbench.config.loader import resolve_config
from crsbench.datasets.loader import load_dataset
from crsbench.models.base import CONV, REC
from crsbench.registry import get_dataset, get_model, list_models

MODELS = ["popularity", "context_repeat", "textcnn", "redial", "kbrd", "kgsf", "transformer"]


@pytest.fixture(scope="module", params=["redial", "opendialkg"])
def dataset(request, real_data_dir, real_cache_dir):
    class NoModel:
        config_file = None
    config = resolve_config(NoModel, get_dataset(request.param), None, [f"data.cache_dir={real_cache_dir}"])
    return load_dataset(request.param, config["data"], real_data_dir)


def test_all_builtin_models_are_listed():
    assert set(MODELS) <= set(list_models())


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_a_step_and_ranks(name, dataset):
    torch.manual_seed(0)
    cls = get_model(name)
    config = resolve_config(cls, get_dataset(dataset.bundle.name))
    model = cls(config["model"], dataset.bundle)
    train, test = dataset.instances["train"], dataset.instances["test"]
    model.fit(train)
    for stage in model.stages():
        params = list(stage.parameters())
        optimizer = torch.optim.Adam(params, lr=1e-3)
        instances = train.rec[:8] if stage.task == REC else train.samples[:8]
        out = stage.loss(model.collate(instances, stage.task))
        loss = out["loss"] if isinstance(out, dict) else out
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        optimizer.step()
    model.eval()
    with torch.no_grad(), model.inference():
        if REC in model.tasks:
            scores = model.recommend(model.collate(test.rec[:8], REC))
            assert scores.shape == (8, dataset.bundle.num_items) and torch.isfinite(scores).all()
        if CONV in model.tasks:
            batch = model.collate(test.samples[:4], CONV)
            responses = model.generate(batch, 5, 2)
            nll, count = model.response_nll(batch)
            assert len(responses) == 4 and all(1 <= len(r) <= 5 for r in responses)
            assert all(t in dataset.bundle.vocab.index for r in responses for t in r)
            assert torch.isfinite(nll).all() and (count > 0).all()
