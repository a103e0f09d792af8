"""run.init_from: a conversation-only run starts from a finished recommender run's weights, keeps
them frozen, and refuses sources that cannot stand in for the skipped stages (real data, small)."""
import json
import shutil

import pytest
import torch
import yaml

from conftest import small_redial
from crsbench.errors import ConfigError
from crsbench.run_dir import RunDir
from crsbench.runner import evaluate_run, run_experiment
from crsbench.trainer import checkpoint

pytestmark = pytest.mark.slow

SMALL = ["model.dim=16", "train.batch_size=8", "stages.pretrain.epochs=1", "stages.rec.epochs=1",
         "stages.conv.epochs=1", "stages.conv.batch_size=16", "model.conv.layers=1", "eval.max_length=6"]


@pytest.fixture(scope="module")
def setup(real_data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("init_from")
    data = small_redial(real_data_dir, tmp, sizes=(40, 10, 10))
    common = SMALL + [f"run.output_dir={tmp / 'runs'}", f"data.cache_dir={tmp / 'cache'}"]
    rec = run_experiment("kgsf", "redial", overrides=common + ["run.tasks=[rec]"], data_dir=str(data), seed=5)
    return data, common, rec


def _weights(run_dir):
    return torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)


def test_conversation_run_starts_from_the_trained_recommender(setup):
    data, common, rec = setup
    conv = run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                          overrides=common + ["run.tasks=[conv]", f"run.init_from={rec.run_dir}"])
    before, after = _weights(rec.run_dir), _weights(conv.run_dir)
    frozen = [k for k in before if not k.startswith("generator.")]
    trained = [k for k in before if k.startswith("generator.") and before[k].is_floating_point()]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)          # recommender and KG kept
    assert any(not torch.equal(before[k], after[k]) for k in trained)     # the conversation trained
    assert any(k.endswith("dist@2") for k in conv.metrics)
    assert not any("recall" in k for k in conv.metrics)
    # an ablation of the conversation side only starts from the same recommender run
    ablated = run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                             overrides=common + ["run.tasks=[conv]", "model.copy=false",
                                                 f"run.init_from={rec.run_dir}"])
    assert all(torch.equal(before[k], _weights(ablated.run_dir)[k]) for k in frozen)


@pytest.mark.parametrize("change, message", [
    (["model.dim=32"], "other shapes"),
    (["data.vocab_min_count=2"], "other data settings"),
])
def test_sources_that_do_not_fit_are_refused(setup, change, message):
    data, common, rec = setup
    with pytest.raises(ConfigError, match=message):
        run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                       overrides=common + change + ["run.tasks=[conv]", f"run.init_from={rec.run_dir}"])


def test_wrong_model_or_missing_run_is_refused(setup, tmp_path):
    data, common, rec = setup
    with pytest.raises(ConfigError, match="is a kgsf run"):
        run_experiment("kbrd", "redial", data_dir=str(data), seed=5,
                       overrides=common[:2] + common[-2:] + ["run.tasks=[conv]", f"run.init_from={rec.run_dir}"])
    with pytest.raises(ConfigError, match="not a finished run"):
        run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                       overrides=common + ["run.tasks=[conv]", f"run.init_from={tmp_path}"])


def test_source_must_hold_the_skipped_stages_parameters(setup):
    """A -MIM source has no MIM parameters, so it cannot stand in for full KGSF's pre-training."""
    data, common, rec = setup
    no_mim = run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                            overrides=common + ["run.tasks=[rec]", "model.mim=false", "stages.rec.epochs=1"])
    with pytest.raises(ConfigError, match="lacks .* parameters of the skipped stages"):
        run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                       overrides=common + ["run.tasks=[conv]", f"run.init_from={no_mim.run_dir}"])


def test_a_run_saved_before_the_conversation_side_existed_gets_a_clear_error(setup, tmp_path):
    """Its config lacks model.conv (filled with today's default) and its weights lack the generator:
    evaluating it names the missing tensors and points to run.init_from."""
    data, _, rec = setup
    old = tmp_path / "redial" / "kgsf" / "old-run"
    shutil.copytree(rec.run_dir, old)
    config = yaml.safe_load((old / "config.yaml").read_text())
    del config["model"]["conv"]
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    weights = {k: v for k, v in _weights(old).items() if not k.startswith("generator.")}
    torch.save(weights, old / "model.pt")
    with pytest.raises(ConfigError, match=r"lacks \d+ of the model's tensors \(e.g. generator\.") as err:
        evaluate_run(old, data_dir=str(data))
    assert "run.init_from" in err.value.hint


def test_a_source_saved_before_a_data_setting_existed_counts_it_at_its_default(setup, tmp_path):
    """Table 2's KBRD runs predate data.kg_edges: the sweep planner counted them done (today's
    defaults fill what an older config lacks), and init_from must read them the same way."""
    data, common, rec = setup
    old = tmp_path / "redial" / "kgsf" / "older-run"
    shutil.copytree(rec.run_dir, old)
    config = yaml.safe_load((old / "config.yaml").read_text())
    assert config["data"].pop("kg_edges") == "crsbench"
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    conv = run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                          overrides=common + ["run.tasks=[conv]", f"run.init_from={old}"])
    assert any(k.endswith("dist@2") for k in conv.metrics)
    with pytest.raises(ConfigError, match=r"other data settings \(kg_edges\)"):   # a real difference still counts
        run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                       overrides=common + ["run.tasks=[conv]", "data.kg_edges=release", f"run.init_from={old}"])


def test_what_this_run_trains_starts_fresh_not_from_the_source(setup):
    """A source that already has conversation weights (here the untrained ones of seed 5) must not
    hand them to a conversation run: before this, variants trained on a full KGSF run fine-tuned its
    decoder instead of training their own (found in the issue-4 GPU runs)."""
    data, common, rec = setup
    # one epoch at a learning rate too small to move a weight by 1e-6: the decoder stays where it started
    fresh = run_experiment("kgsf", "redial", data_dir=str(data), seed=6,
                           overrides=common + ["run.tasks=[conv]", f"run.init_from={rec.run_dir}",
                                               "stages.conv.epochs=1", "stages.conv.lr=1e-12"])
    source, after = _weights(rec.run_dir), _weights(fresh.run_dir)
    decoder = [k for k in source if k.startswith("generator.") and source[k].is_floating_point()]
    kept = [k for k in source if not k.startswith("generator.")]
    assert decoder and kept
    assert all(torch.equal(source[k], after[k]) for k in kept)
    moved = max((source[k] - after[k]).abs().max().item() for k in decoder)
    assert moved > 1e-3                                                    # seed 6's own initialisation


def test_tied_word_embeddings_start_from_this_build_not_the_source(setup, tmp_path):
    """The word embeddings are tied (encoder, decoder and output layer: one parameter, three
    state-dict names). A source run made on another preprocessing build holds other word2vec vectors;
    a conversation run must start from this build's, under every name. Before, only the first name
    counted as trained here, so the other two were loaded from the source and overwrote the shared
    tensor: Table 3's conversation cells inherited their recommender run's build."""
    data, common, rec = setup
    source = tmp_path / "other_build"
    shutil.copytree(rec.run_dir, source)
    weights = _weights(source)
    names = [k for k in weights if k.endswith("embedding.weight") and k.startswith("generator.")]
    assert len(names) == 3
    this_build = weights[names[0]].clone()                   # the rec run never trains them
    for name in names:
        weights[name] = torch.full_like(this_build, 0.5)     # "another build's vectors"
    checkpoint.save(weights, source / "model.pt")
    run = run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                         overrides=common + ["run.tasks=[conv]", f"run.init_from={source}",
                                             "stages.conv.epochs=1", "stages.conv.lr=1e-12"])
    after = _weights(run.run_dir)
    for name in names:
        assert torch.allclose(after[name], this_build, atol=1e-5), name


def test_a_conversation_run_from_a_recommender_run_equals_the_full_run(setup):
    """Training the conversation on a recommender run gives the weights a full run of the same seed
    gives: a stage's randomness (batch order, dropout) depends on the seed and the stage, not on
    which stages ran before it in the process. Else the two ways give differently drawn results, and
    tables that mix them compare draws rather than models."""
    data, common, rec = setup
    full = run_experiment("kgsf", "redial", overrides=common, data_dir=str(data), seed=5)
    split = run_experiment("kgsf", "redial", data_dir=str(data), seed=5,
                           overrides=common + ["run.tasks=[conv]", f"run.init_from={rec.run_dir}"])
    a, b = _weights(full.run_dir), _weights(split.run_dir)
    assert a.keys() == b.keys()
    # equal up to float rounding (CPU kernels may sum in another order from one call to the next);
    # other draws of batches or dropout masks move the weights by orders of magnitude more
    gaps = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point()}
    worst = max(gaps, key=gaps.get)
    assert gaps[worst] < 1e-4, (worst, gaps[worst])
    assert full.metrics["test/gen/ppl"] == pytest.approx(split.metrics["test/gen/ppl"], rel=1e-4)


def test_a_sweep_retrains_a_source_cell_whose_run_has_no_weights(setup, tmp_path):
    """Runs restored from a records archive keep their results, not their weights. A sweep whose new
    dependent cell must start from such a run trains the source cell again first (the dependent
    waits, naming the run), keeps counting the dependents that started from the old run, and the
    re-trained seed repeats the old run's scores."""
    from crsbench.sweep.driver import describe_plan, run_sweep
    from crsbench.sweep.executors import LocalExecutor
    from crsbench.sweep.estimate import estimate, finished_seconds
    from crsbench.sweep.plan import DONE, RESUME, TODO, WAIT, Planner
    from crsbench.sweep.spec import load_sweep
    data, common, _ = setup
    small = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in common) if k != "run.output_dir"}
    rows = [{"model": "kgsf", "set": {"run.tasks": ["rec"]}},
            {"model": "kgsf", "name": "kgsf-conv", "init_from": "kgsf", "set": {"run.tasks": ["conv"]}}]
    spec = {"name": "weights", "datasets": ["redial"], "seeds": [5], "output_dir": str(tmp_path / "runs"),
            "set": small, "rows": rows}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert not run_sweep(load_sweep(path), LocalExecutor(1, 1, str(data)), str(data)).failed
    old_rec = {p.cell.row: p for p in Planner(load_sweep(path), str(data)).plan_all()}["kgsf"].run_dir
    for name in ("model.pt", "checkpoints"):                # what `crsbench runs --unarchive` gives back
        shutil.rmtree(old_rec / name) if (old_rec / name).is_dir() else (old_rec / name).unlink()
    rows.append({"model": "kgsf", "tag": "-copy", "init_from": "kgsf",
                 "set": {"run.tasks": ["conv"], "model.copy": False}})
    path.write_text(yaml.safe_dump(spec))
    plans = {p.cell.row: p for p in Planner(load_sweep(path), str(data)).plan_all()}
    assert plans["kgsf"].status == TODO and plans["kgsf"].redoes == old_rec
    assert plans["kgsf"].redo_reason == "no weights (model.pt), and kgsf-copy / redial / seed 5 starts from them"
    assert plans["kgsf-conv"].status == DONE                # it started from the old run: it still counts
    assert plans["kgsf-copy"].status == WAIT and plans["kgsf-copy"].needs_weights_of.row == "kgsf"
    listing = describe_plan(list(plans.values()))
    assert f"for kgsf / redial / seed 5: its run {old_rec} has no weights (model.pt) to start from" in listing
    assert "1 to do (1 of them re-do a run that does not count)" in listing
    # that re-training, cut off (a stopped sweep, a machine gone): the next sweep resumes it
    cut_off = old_rec.parent / "20991231-000000-seed5"
    shutil.copytree(old_rec, cut_off)
    meta = json.loads((cut_off / "run.json").read_text())
    meta.update(status="interrupted")
    (cut_off / "run.json").write_text(json.dumps(meta))
    resumed = {p.cell.row: p for p in Planner(load_sweep(path), str(data)).plan_all()}
    assert resumed["kgsf"].status == RESUME and resumed["kgsf"].run_dir == cut_off
    assert resumed["kgsf"].redoes == old_rec and resumed["kgsf-copy"].status == WAIT
    shutil.rmtree(cut_off)
    report = run_sweep(load_sweep(path), LocalExecutor(1, 1, str(data)), str(data))
    assert not report.failed and not report.skipped
    assert {c.row for c in report.ran} == {"kgsf", "kgsf-copy"}
    again = {p.cell.row: p for p in Planner(load_sweep(path), str(data)).plan_all()}
    assert [p.status for p in again.values()] == [DONE, DONE, DONE]
    new_rec = again["kgsf"].run_dir
    assert new_rec != old_rec and RunDir(new_rec).weights.exists()
    assert RunDir(again["kgsf-copy"].run_dir).read_config()["run"]["init_from"] == str(new_rec)
    same_seed = [RunDir(r).read_metrics() for r in (old_rec, new_rec)]
    scores = [{k: v for k, v in m["metrics"].items() if k.startswith("test/")} for m in same_seed]
    assert "test/all/recall@50" in scores[0] and scores[0] == scores[1]
    # --same-build with the source's runs on another build: the dependents wait, naming the runs they
    # will re-do, and are charged those runs' times (they had no estimate: no other seed is finished)
    build = json.loads((new_rec / "run.json").read_text())["data"]["content"]
    for run in (old_rec, new_rec):
        meta = json.loads((run / "run.json").read_text())
        meta["data"]["content"] = "0" * 64
        (run / "run.json").write_text(json.dumps(meta))
    plans = Planner(load_sweep(path), str(data), same_build=True).plan_all()
    by_row = {p.cell.row: p for p in plans}
    assert by_row["kgsf"].status == TODO and by_row["kgsf"].redoes == new_rec
    for row in ("kgsf-conv", "kgsf-copy"):
        assert by_row[row].status == WAIT and by_row[row].redoes == again[row].run_dir
        assert by_row[row].redo_reason == "kgsf / redial / seed 5 is trained first"
    guess = estimate(plans)
    assert not guess.unknown and len(guess.seconds) == 3
    assert guess.seconds[1] == finished_seconds(again["kgsf-conv"].run_dir)
    # the new source run back on this build: the dependent that started from the old one is re-done
    meta = json.loads((new_rec / "run.json").read_text())
    meta["data"]["content"] = build
    (new_rec / "run.json").write_text(json.dumps(meta))
    by_row = {p.cell.row: p for p in Planner(load_sweep(path), str(data), same_build=True).plan_all()}
    assert by_row["kgsf"].status == DONE and by_row["kgsf-copy"].status == DONE
    assert by_row["kgsf-conv"].status == TODO and by_row["kgsf-conv"].redoes == again["kgsf-conv"].run_dir
    assert by_row["kgsf-conv"].redo_reason == "it started from a run of kgsf / redial / seed 5 that does not count"


def test_the_planner_sees_a_cell_that_another_process_finished_or_started_after_it_planned(setup, tmp_path):
    """Two sweeps of one file: a cell planned `to do` here, then finished (or started) by the other
    process, is DONE (or RUNNING) with the other's run when the driver is about to start it; runs
    that were already there when the planner listed them are not mistaken for it."""
    import os
    import socket

    from crsbench.sweep.plan import DONE, RUNNING, TODO, Planner
    from crsbench.sweep.spec import load_sweep
    data, common, rec = setup
    small = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in common) if k != "run.output_dir"}
    spec = {"name": "twice", "datasets": ["redial"], "seeds": [5], "output_dir": str(tmp_path / "runs"),
            "set": small, "rows": [{"model": "kgsf", "set": {"run.tasks": ["rec"]}}]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    planner = Planner(load_sweep(path), str(data))
    [plan] = planner.plan_all()
    assert plan.status == TODO and planner.started_elsewhere(plan) is None
    other = tmp_path / "runs" / "redial" / "kgsf" / "20991231-000000-seed5"     # the other sweep's run
    shutil.copytree(rec.run_dir, other)
    assert planner.started_elsewhere(plan).status == DONE
    assert planner.started_elsewhere(plan).run_dir == other
    meta = json.loads((other / "run.json").read_text())
    meta.update(status="running", host=socket.gethostname(), pid=os.getpid(), pid_start=None)
    (other / "run.json").write_text(json.dumps(meta))
    assert planner.started_elsewhere(plan).status == RUNNING
    later = Planner(load_sweep(path), str(data))                # planned after the other run appeared
    [plan] = later.plan_all()
    assert plan.status == RUNNING and later.started_elsewhere(plan) is None


def test_an_interrupted_dependent_run_resumes_without_its_source(setup, tmp_path, monkeypatch):
    """A conversation run stopped mid-epoch resumes from its own checkpoint, which holds the source's
    frozen tensors too: it needs neither the source's directory nor its model.pt any more, and ends
    with the weights of a run trained in one go."""
    import signal
    from crsbench.interrupt import RunInterrupted, StopRequest
    from crsbench.models.kgsf.model import KGSF
    data, common, rec = setup
    source = tmp_path / "source"
    shutil.copytree(rec.run_dir, source)
    conv = common + ["run.tasks=[conv]", "stages.conv.epochs=2",
                     f"run.init_from={source}"]
    straight = run_experiment("kgsf", "redial", data_dir=str(data), seed=5, overrides=conv)
    stop, calls, original = StopRequest(), {"n": 0}, KGSF.conv_loss

    def signalled(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:                             # epoch 1, step 3
            stop._handle(signal.SIGTERM, None)
        return original(self, batch)
    monkeypatch.setattr(KGSF, "conv_loss", signalled)
    with pytest.raises(RunInterrupted):
        run_experiment("kgsf", "redial", data_dir=str(data), seed=5, overrides=conv, stop=stop)
    monkeypatch.setattr(KGSF, "conv_loss", original)
    stopped = _the_interrupted_run(straight.run_dir.parent)
    shutil.rmtree(source)                               # moved, deleted, or on a machine that is gone
    resumed = run_experiment(None, None, resume=stopped)
    assert RunDir(stopped).read_meta()["status"] == "finished"
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert a.keys() == b.keys()
    gaps = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point()}
    assert max(gaps.values()) < 1e-4, max(gaps, key=gaps.get)
    assert resumed.metrics["test/gen/ppl"] == pytest.approx(straight.metrics["test/gen/ppl"], rel=1e-4)


def _the_interrupted_run(runs):
    found = [p for p in runs.iterdir() if RunDir(p).read_meta().get("status") == "interrupted"]
    assert len(found) == 1, found
    return found[0]
