"""The settings that switch one difference between crsbench's KGSF and the release's on at a time
(issue 13 §5): DBpedia edges listed the release's way, PyG 1.3.2's R-GCN sum and initialisation,
the release's MIM, item scores over all entities, AMSGrad and one optimizer across stages."""
import math

import pytest
import torch

from crsbench.config.loader import resolve_config
from crsbench.datasets.instances import build_instances
from crsbench.datasets.kg import SELF_LOOP, build_entity_kg
from crsbench.errors import ConfigError
from crsbench.models.graph import FeaturelessRGCN
from crsbench.models.kgsf import KGSF
from crsbench.models.kgsf.mim import ReleaseMIM
from crsbench.trainer import Trainer
from crsbench.trainer.seeding import seed_everything


class NoDataset:
    config_file = None


def _config(*overrides):
    base = ["train.batch_size=2", "stages.pretrain.epochs=1", "stages.rec.epochs=1",
            "stages.rec.early_stop_metric=null", "model.dim=8", "model.conv.dim=8", "run.tasks=[rec]"]
    return resolve_config(KGSF, NoDataset, None, base + list(overrides))


def test_release_edge_list_doubles_edges_and_counts_and_drops_self_triples():
    # directed edges counted once: self-loops 5, a 6, b 2 (a self-triple, both ways), c 2
    triples = [(0, 0, 1), (1, 0, 2), (2, 0, 3), (4, 1, 4), (0, 2, 4)]
    names = ["a", "b", "c"]

    def build(cut, form):
        return build_entity_kg(triples, 5, names, [""] * 5, min_relation_edges=cut, form=form)
    assert build(5, "crsbench").relation_names == ["a"] and build(5, "crsbench").num_edges == 6
    release = build(5, "release")                        # counted twice: self-loops 10 pass the cut
    assert release.relation_names == [SELF_LOOP, "a"] and release.num_edges == 2 * (5 + 6)
    assert build(3, "crsbench").relation_names == [SELF_LOOP, "a"]
    assert build(3, "release").relation_names == [SELF_LOOP, "a", "c"]      # c's 2 edges count as 4
    assert "b" in build(1, "crsbench").relation_names
    assert "b" not in build(1, "release").relation_names                    # self-triples dropped


def test_rgcn_release_init_and_sum_aggregation():
    edges = torch.tensor([[0, 1, 2], [2, 2, 0]])
    types = torch.tensor([0, 0, 1])
    rgcn = FeaturelessRGCN(3, 4, 2, 2, edges, types, aggr="add", init="release")
    bound = 1 / math.sqrt(2 * 3)
    for p in (rgcn.weight, rgcn.comp, rgcn.root, rgcn.bias):
        assert p.abs().max() <= bound and p.abs().max() > 0
    mean = FeaturelessRGCN(3, 4, 2, 2, edges, types, aggr="mean")
    mean.load_state_dict(rgcn.state_dict())
    # node 2 receives two relation-0 messages: the sum is twice their mean; node 0 one message
    w = torch.einsum("rb,bnd->rnd", rgcn.comp, rgcn.weight)
    base = rgcn.root + rgcn.bias
    assert torch.allclose(rgcn()[2] - base[2], w[0, 0] + w[0, 1], atol=1e-6)
    assert torch.allclose(mean()[2] - base[2], (w[0, 0] + w[0, 1]) / 2, atol=1e-6)


def test_release_mim_trains_the_recommenders_pooling_and_scores_every_entity(tiny_bundle):
    config = _config("model.mim_form=release")
    model = KGSF(config["model"], tiny_bundle)
    assert isinstance(model.mim, ReleaseMIM)
    assert model.mim.entity_bias.shape == (tiny_bundle.entity_kg.num_nodes,)
    pretrain = model.stages()[0]
    trained = {id(p) for p in pretrain.parameters()}
    assert all(id(p) in trained for p in model.recommender.word_pooling.parameters())
    batch = model.collate(build_instances(tiny_bundle)["train"].rec, "rec")
    loss = pretrain.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and model.recommender.word_pooling.proj.weight.grad.abs().sum() > 0
    # labels: movies of the last 5 context turns only (items), never the response's
    samples = [inst.sample for inst in build_instances(tiny_bundle)["train"].rec]
    for row, sample in enumerate(samples):
        got = set(batch["mim_entities"][row][batch["mim_mask"][row]].tolist())
        assert got == {i for turn in sample.context[-5:] for i in turn.items}


def test_item_scores_over_all_entities_sum_over_the_batch(tiny_bundle):
    config = _config("model.item_scores=all_entities", "model.mim=false")
    model = KGSF(config["model"], tiny_bundle)
    batch = model.collate(build_instances(tiny_bundle)["train"].rec, "rec")
    word_reps, entity_reps = model.knowledge()
    user = model._user(word_reps, entity_reps, batch)
    logits = user @ entity_reps.t() + model.entity_bias
    want = torch.nn.functional.cross_entropy(logits, model.item_entities[batch["target"]], reduction="sum")
    assert torch.allclose(model.rec_loss(batch)["loss"], want)
    # evaluation ranks the candidates: the candidate columns of the same scores
    assert torch.allclose(model.recommend(batch), logits[:, model.item_entities])


def test_unknown_setting_values_are_config_errors(tiny_bundle):
    with pytest.raises(ConfigError, match="model.mim_form"):
        KGSF(_config("model.mim_form=paper")["model"], tiny_bundle)


@pytest.mark.parametrize("carry", [False, True])
def test_carry_optimizer_continues_pretrainings_adam_state(tiny_bundle, tmp_path, carry):
    config = _config("train.amsgrad=true", f"stages.rec.carry_optimizer={str(carry).lower()}")
    seed_everything(0)
    model = KGSF(config["model"], tiny_bundle)
    trainer = Trainer(model, build_instances(tiny_bundle), config, tmp_path)
    seen = {}
    original = trainer._run_stage

    def spy(index, stage, state, summaries):
        if stage.name == "rec":
            seen["pretrain_steps"] = {id(p): float(st["step"]) for p, st in trainer._last_optimizer.state.items()}
        return original(index, stage, state, summaries)
    trainer._run_stage = spy
    trainer.fit()
    rec_optimizer = trainer._last_optimizer
    assert all(g["amsgrad"] for g in rec_optimizer.param_groups)
    rgcn_comp = model.entity_kg_encoder.rgcn.comp
    rec_steps = float(rec_optimizer.state[rgcn_comp]["step"])
    batches = math.ceil(len(build_instances(tiny_bundle)["train"].rec) / 2)
    pre = seen["pretrain_steps"][id(rgcn_comp)]
    assert pre == batches
    assert rec_steps == (pre + batches if carry else batches)
    # the recommender's own parameters were not in pre-training: they start fresh either way
    assert float(rec_optimizer.state[model.recommender.gate.weight]["step"]) == batches


def test_release_edge_list_on_the_shared_dbpedia_graph(real_data_dir):
    """The counts the release's `_edge_list(kg, n, hop=2)` gives on the shared subgraph: 46 relations,
    733,416 directed edges of which 365,022 distinct; crsbench's own list: 36 relations."""
    from crsbench.datasets.redial import read_release_pickles
    entity2id, _, _, subkg = read_release_pickles(real_data_dir / "redial")
    num = max(entity2id.values()) + 1
    triples = [(h, r, t) for h, pairs in subkg.items() for r, t in pairs]
    names = [str(r) for r in range(max(r for _, r, _ in triples) + 1)]
    ours = build_entity_kg(triples, num, names, [""] * num, 1000)
    release = build_entity_kg(triples, num, names, [""] * num, 1000, form="release")
    assert ours.num_relations == 36 and release.num_relations == 46
    assert release.num_edges == 733_416
    assert len(set(zip(*release.edge_index.tolist(), release.edge_type.tolist()))) == 365_022


def test_every_recommender_turn_trains_and_turns_without_a_target_add_mim_only(tiny_bundle):
    config = _config("model.rec_turns=all")
    model = KGSF(config["model"], tiny_bundle)
    split = build_instances(tiny_bundle)["train"]
    # a recommender turn that names no movie (the fixture's all do): a copy without its items
    import dataclasses
    first = split.samples[0]
    quiet = dataclasses.replace(first, sample_id=10_000, response=dataclasses.replace(first.response, items=[]))
    split.samples.append(quiet)
    rec_stage = [s for s in model.stages() if s.name == "rec"][0]
    every = rec_stage.instances(split)
    extra = every[len(split.rec):]
    assert every[:len(split.rec)] == split.rec and extra
    assert {i.sample.sample_id for i in extra}.isdisjoint({i.sample.sample_id for i in split.rec})
    assert all(i.target_index == -1 for i in extra)
    mixed = model.rec_loss(model.collate(every, "rec"))
    targets_only = model.rec_loss(model.collate(split.rec, "rec"))
    assert torch.allclose(mixed["rec"], targets_only["rec"], atol=1e-6)     # the same targets scored
    assert not torch.allclose(mixed["mim"], targets_only["mim"])           # MIM sees every turn
    none = model.rec_loss(model.collate(extra, "rec"))
    assert none["rec"] == 0 and torch.isfinite(none["loss"])
    default = KGSF(_config()["model"], tiny_bundle)
    assert all(s.instances is None for s in default.stages())


def test_release_word_side_reads_every_token_of_the_last_five_turns(tiny_bundle):
    model = KGSF(_config("model.word_side=release")["model"], tiny_bundle)
    names = tiny_bundle.word_kg.node_names
    for inst in build_instances(tiny_bundle)["train"].rec:
        words = model._context_words(inst.sample)
        want = [t.lower() for turn in inst.sample.context[-5:] for t in turn.tokens if t.lower() in set(names)]
        assert [names[i] for i in words] == want
