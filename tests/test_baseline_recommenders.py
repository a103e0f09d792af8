"""The learned baseline recommenders (KBRD, TextCNN, ReDial) fit the tiny fixture's training targets."""
import pytest
import torch

from conftest import model_defaults
from crsbench.datasets.instances import build_instances
from crsbench.registry import get_model


@pytest.mark.parametrize("name", ["kbrd", "textcnn", "redial", "kgsf"])
def test_learns_the_training_targets(name, tiny_bundle):
    torch.manual_seed(0)
    cls = get_model(name)
    config = model_defaults(cls)
    if "conv" in config:
        config["conv"]["dim"] = 8               # the fixture's word2vec size
    model = cls(config, tiny_bundle)
    word2vec = tiny_bundle.word_embeddings.copy()
    train = build_instances(tiny_bundle)["train"]
    stage = next(s for s in model.stages() if s.name == "rec")
    batch = model.collate(train.rec, "rec")
    optimizer = torch.optim.Adam(stage.parameters(), lr=0.01)
    def loss_of():
        out = stage.loss(batch)
        return out["loss"] if isinstance(out, dict) else out
    model.eval()                        # losses compared without dropout noise
    first = loss_of().item()
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        loss_of().backward()
        optimizer.step()
    model.eval()
    assert loss_of().item() < 0.7 * first
    # training a model must not write into the dataset's word2vec vectors, which other models share
    assert (tiny_bundle.word_embeddings == word2vec).all()
    with torch.no_grad():
        scores = model.recommend(batch)
    assert scores.shape == (len(train.rec), tiny_bundle.num_items)
    # the most frequent training target (item 1: 3 of 5 instances) is now ranked first for them
    hits = [int(scores[i].argmax()) == inst.target_index for i, inst in enumerate(train.rec)]
    assert sum(hits) >= 3


def test_textcnn_scores_a_context_the_same_alone_and_beside_a_longer_one(tiny_bundle):
    """Windows in a batch's padding are masked out of the max-pooling (length-bucketed batches then
    change speed, not results)."""
    torch.manual_seed(0)
    cls = get_model("textcnn")
    model = cls(model_defaults(cls), tiny_bundle).eval()
    with torch.no_grad():                   # a strongly positive bias: padding windows would win the max
        for conv in model.convs:
            conv.bias.fill_(5.0)
    rec = build_instances(tiny_bundle)["train"].rec
    lengths = [sum(len(t.tokens) for t in inst.sample.context) for inst in rec]
    short, long = rec[lengths.index(min(lengths))], rec[lengths.index(max(lengths))]
    assert min(lengths) + 4 < max(lengths)
    with torch.no_grad():
        alone = model.recommend(model.collate([short], "rec"))
        beside = model.recommend(model.collate([short, long], "rec"))[:1]
    assert torch.allclose(alone, beside, atol=1e-5)
