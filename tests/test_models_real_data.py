"""Every registered model builds, trains a step and ranks real test instances, on both datasets."""
import pytest
import torch

from crsbench.config.loader import resolve_config
from crsbench.datasets.loader import load_dataset
from crsbench.models.base import CONV, REC
from crsbench.registry import get_dataset, get_model, list_models

pytestmark = pytest.mark.slow       # every model through the Trainer on both real datasets

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
def test_model_trains_a_step_and_ranks(name, dataset, tmp_path):
    """Through the generic Trainer (one epoch on the first samples of train, validated on the first of
    valid): every stage changes the parameters it trains; then the model ranks and generates."""
    from crsbench.trainer import Trainer
    torch.manual_seed(0)
    cls = get_model(name)
    config = resolve_config(cls, get_dataset(dataset.bundle.name), None,
                            ["train.epochs=1", "train.batch_size=4", "eval.max_samples=6", "eval.batch_size=8"])
    model = cls(config["model"], dataset.bundle)
    train, test = dataset.instances["train"].head(6), dataset.instances["test"]
    before = {stage.name: [p.detach().clone() for p in stage.parameters()] for stage in model.stages()}
    summary = Trainer(model, {"train": train, "valid": dataset.instances["valid"]}, config, tmp_path).fit()
    assert [s["stage"] for s in summary["stages"]] == [s.name for s in model.stages()]
    for stage in model.stages():
        after = list(stage.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before[stage.name], after)), stage.name
        assert all(torch.isfinite(h["train_loss"]) if isinstance(h["train_loss"], torch.Tensor)
                   else h["train_loss"] == h["train_loss"] for h in summary["stages"][0]["history"])
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
