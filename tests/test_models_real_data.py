"""Every registered model builds, trains a step and ranks real test instances, on both datasets."""
import pytest
import torch

from crsbench.config.loader import resolve_config
from crsbench.datasets.loader import load_dataset
from crsbench.registry import get_dataset, get_model, list_models

MODELS = ["popularity", "context_repeat", "textcnn", "redial", "kbrd", "kgsf"]


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
        out = stage.loss(model.collate(train.rec[:8], stage.task))
        loss = out["loss"] if isinstance(out, dict) else out
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        optimizer.step()
    model.eval()
    with torch.no_grad(), model.inference():
        scores = model.recommend(model.collate(test.rec[:8], "rec"))
    assert scores.shape == (8, dataset.bundle.num_items) and torch.isfinite(scores).all()
