"""The generic trainer on KGSF over the tiny fixture: resume equality, early stopping with
restore-best, NaN handling, frozen parameters, atomic checkpoints."""
import pytest
import torch

from crsbench.config.loader import resolve_config
from crsbench.datasets.instances import build_instances
from crsbench.errors import TrainingError
from crsbench.models.kgsf import KGSF
from crsbench.trainer import Trainer, checkpoint
from crsbench.trainer.seeding import seed_everything


class NoDataset:
    config_file = None


def _config(*overrides):
    base = ["train.batch_size=2", "stages.pretrain.epochs=2", "stages.rec.epochs=3",
            "stages.rec.early_stop_metric=null", "model.dim=8", "train.lr=0.01", "train.lr_gamma=0.7",
            "eval.batch_size=4", "model.conv.dim=8", "stages.conv.epochs=1"]
    return resolve_config(KGSF, NoDataset, None, base + list(overrides))


def _train(bundle, run_dir, config, resume=False, crash_after=None):
    seed_everything(config["run"]["seed"])
    model = KGSF(config["model"], bundle)
    if crash_after is not None:
        calls = {"n": 0}
        original = model.rec_loss
        def crashing(batch):
            calls["n"] += 1
            if calls["n"] > crash_after:
                raise KeyboardInterrupt("simulated kill")
            return original(batch)
        model.rec_loss = crashing
    summary = Trainer(model, build_instances(bundle), config, run_dir).fit(resume=resume)
    return model, summary


def test_resumed_run_equals_uninterrupted_run(tiny_bundle, tmp_path):
    config = _config()
    straight, _ = _train(tiny_bundle, tmp_path / "a", config)
    # rec has 5 instances -> 3 steps per epoch; crash in the middle of rec epoch 2
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_bundle, tmp_path / "b", config, crash_after=4)
    state = checkpoint.load(tmp_path / "b" / "checkpoints" / "last.pt")
    assert state["stage_index"] == 1 and state["progress"]["epoch"] == 1
    assert state["scheduler"]["last_epoch"] == 1                # lr decayed once, restored on resume
    resumed, summary = _train(tiny_bundle, tmp_path / "b", config, resume=True)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [s["stage"] for s in summary["stages"]] == ["pretrain", "rec", "conv"]
    assert (tmp_path / "b" / "model.pt").exists()


def test_resume_at_a_stage_boundary_and_after_the_end(tiny_bundle, tmp_path):
    config = _config()
    straight, _ = _train(tiny_bundle, tmp_path / "a", config)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_bundle, tmp_path / "b", config, crash_after=0)     # dies at rec's first step
    resumed, _ = _train(tiny_bundle, tmp_path / "b", config, resume=True)
    again, _ = _train(tiny_bundle, tmp_path / "b", config, resume=True)   # nothing left to do
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]) and torch.equal(value, again.state_dict()[key])


def test_early_stopping_and_restore_best(tiny_bundle, tmp_path):
    config = _config("stages.rec.epochs=30", "stages.rec.early_stop_metric=recall@1+recall@50",
                     "stages.rec.early_stop_patience=2", "stages.rec.lr=0.3")
    model, summary = _train(tiny_bundle, tmp_path, config)
    rec = summary["stages"][1]
    assert rec["epochs"] < 30 and rec["epochs"] == rec["best_epoch"] + 2
    best = checkpoint.load(tmp_path / "checkpoints" / "best.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, best[key]), key
    values = [h["early_stop_value"] for h in rec["history"]]
    assert max(values) == rec["best"] == values[rec["best_epoch"] - 1]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tiny_bundle, tmp_path):
    config = _config()
    seed_everything(0)
    model = KGSF(config["model"], tiny_bundle)
    original, calls = model.rec_loss, {"n": 0}
    def nan_later(batch):
        calls["n"] += 1
        out = original(batch)
        if calls["n"] > 4:
            out["loss"] = out["loss"] * float("nan")
        return out
    model.rec_loss = nan_later
    with pytest.raises(TrainingError) as err:
        Trainer(model, build_instances(tiny_bundle), config, tmp_path).fit()
    assert "stage 'rec', epoch 2" in str(err.value) and "last.pt" in str(err.value)
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert state["progress"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))


def test_a_stage_trains_only_its_parameters(tiny_bundle, tmp_path):
    config = _config()
    seed_everything(0)
    model = KGSF(config["model"], tiny_bundle)
    declared = model.stages
    model.stages = lambda: [s for s in declared() if s.name == "pretrain"]     # MIM pre-training alone
    before = {k: v.clone() for k, v in model.recommender.state_dict().items()}
    kg_before = model.entity_kg_encoder.rgcn.comp.detach().clone()
    Trainer(model, build_instances(tiny_bundle), config, tmp_path).fit()
    for key, value in model.recommender.state_dict().items():
        assert torch.equal(value, before[key]), key           # frozen in MIM pre-training
    assert not torch.equal(model.entity_kg_encoder.rgcn.comp, kg_before)   # trained
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again afterwards


def test_tensorboard_scalars_are_written(tiny_bundle, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    config = _config("train.log_every=1", "stages.rec.early_stop_metric=recall@50")
    _, summary = _train(tiny_bundle, tmp_path, config)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"pretrain/train/loss", "rec/train/loss", "rec/valid/all/recall@50"} <= set(tags)
    # one validation point per rec epoch, equal to what the summary's history recorded
    valid = [e.value for e in events.Scalars("rec/valid/all/recall@50")]
    history = [h["valid"]["all/recall@50"] for h in summary["stages"][1]["history"]]
    assert valid == pytest.approx(history) and len(valid) == 3
    assert len(events.Scalars("rec/train/loss")) == 3 * 3          # 3 epochs x 3 steps, log_every=1


def test_a_scored_stage_without_epochs_is_refused_but_pretraining_may_be_skipped(tiny_bundle, tmp_path):
    from crsbench.errors import ConfigError
    with pytest.raises(ConfigError, match="stages.rec.epochs is 0"):
        _train(tiny_bundle, tmp_path / "a", _config("stages.rec.epochs=0"))
    _, summary = _train(tiny_bundle, tmp_path / "b", _config("stages.pretrain.epochs=0"))
    assert summary["stages"][0]["epochs"] == 0 and summary["stages"][1]["epochs"] == 3


def test_stop_request_checkpoints_mid_epoch_and_resume_is_bit_identical(tiny_bundle, tmp_path):
    """SIGTERM's path: the handler sets the flag, the trainer writes a checkpoint after the current
    step (inside the epoch) and stops; --resume continues with the remaining batches."""
    import signal
    from crsbench.interrupt import RunInterrupted, StopRequest
    config = _config()
    straight, _ = _train(tiny_bundle, tmp_path / "a", config)
    seed_everything(config["run"]["seed"])
    model = KGSF(config["model"], tiny_bundle)
    stop = StopRequest()
    original, calls = model.rec_loss, {"n": 0}
    def signalled(batch):
        calls["n"] += 1
        if calls["n"] == 5:                     # rec epoch 2, step 2 of 3
            stop._handle(signal.SIGTERM, None)
        return original(batch)
    model.rec_loss = signalled
    with pytest.raises(RunInterrupted) as err:
        Trainer(model, build_instances(tiny_bundle), config, tmp_path / "b", stop).fit()
    assert err.value.exit_code == 128 + signal.SIGTERM
    state = checkpoint.load(tmp_path / "b" / "checkpoints" / "last.pt")
    assert state["stage_index"] == 1 and state["progress"]["epoch"] == 1
    assert state["progress"]["in_epoch"]["batches"] == 2
    resumed, summary = _train(tiny_bundle, tmp_path / "b", config, resume=True)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert [len(s["history"]) for s in summary["stages"]] == [2, 3, 1]


def test_time_based_checkpoints_within_an_epoch(tiny_bundle, tmp_path):
    """With checkpoint_minutes tiny, a checkpoint follows every step; killed after one, the run
    resumes inside the epoch and ends as the uninterrupted run."""
    config = _config("train.checkpoint_minutes=0.000001")
    straight, _ = _train(tiny_bundle, tmp_path / "a", config)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_bundle, tmp_path / "b", config, crash_after=4)      # dies at rec epoch 2, step 2
    state = checkpoint.load(tmp_path / "b" / "checkpoints" / "last.pt")
    within = state["progress"]["in_epoch"]
    assert (within["epoch"], within["batches"], within["count"]) == (1, 1, 1) and within["total"] > 0
    resumed, _ = _train(tiny_bundle, tmp_path / "b", config, resume=True)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_run_tasks_selects_the_stages(tiny_bundle, tmp_path):
    from crsbench.errors import ConfigError
    _, summary = _train(tiny_bundle, tmp_path / "a", _config("run.tasks=[rec]"))
    assert [s["stage"] for s in summary["stages"]] == ["pretrain", "rec"]
    _, summary = _train(tiny_bundle, tmp_path / "b", _config("run.tasks=[conv]", "stages.conv.epochs=1"))
    assert [s["stage"] for s in summary["stages"]] == ["conv"]
    with pytest.raises(ConfigError, match="run.tasks"):
        _train(tiny_bundle, tmp_path / "c", _config("run.tasks=[chat]"))


def test_length_buckets_cover_every_instance_once_with_little_padding():
    from crsbench.trainer.trainer import batch_order
    lengths = [int(x) for x in torch.randint(1, 300, (1000,), generator=torch.Generator().manual_seed(1))]
    seeded = lambda n: torch.Generator().manual_seed(n)        # noqa: E731
    plain = batch_order(1000, 32, None, seeded(0))
    bucketed = batch_order(1000, 32, lengths, seeded(0))
    for batches in (plain, bucketed):
        assert sorted(i for b in batches for i in b) == list(range(1000))
        assert all(len(b) <= 32 for b in batches)
    assert bucketed == batch_order(1000, 32, lengths, seeded(0))          # deterministic per seed
    assert bucketed != batch_order(1000, 32, lengths, seeded(1))
    padded = lambda batches: sum(len(b) * max(lengths[i] for i in b) for b in batches)   # noqa: E731
    assert padded(bucketed) < 0.7 * padded(plain)
    # batches are not served shortest-first
    firsts = [max(lengths[i] for i in b) for b in bucketed[:10]]
    assert firsts != sorted(firsts)


def test_generation_curve_per_conversation_epoch(tiny_bundle, tmp_path):
    """eval.generation_every_epoch decodes a fixed validation subset after each conversation epoch:
    Dist-n, Item Ratio and perplexity per epoch in history.jsonl and TensorBoard (never selection)."""
    import json
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    config = _config("stages.conv.epochs=2", "eval.generation_every_epoch=5")
    _, summary = _train(tiny_bundle, tmp_path, config)
    lines = [json.loads(l) for l in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [(l["stage"], l["epoch"]) for l in lines] == [("pretrain", 1), ("pretrain", 2), ("rec", 1), ("rec", 2),
                                                       ("rec", 3), ("conv", 1), ("conv", 2)]
    conv = [l for l in lines if l["stage"] == "conv"]
    assert all({"gen/dist@2", "gen/item_ratio", "gen/bleu@2", "gen/ppl", "gen/ppl_other_context",
                "gen/context_gain"} <= set(l["generation"]) for l in conv)
    for line in conv:
        g = line["generation"]
        assert g["gen/context_gain"] == pytest.approx(g["gen/ppl_other_context"] / g["gen/ppl"])
    assert not any("generation" in l for l in lines if l["stage"] != "conv")
    assert summary["stages"][2]["history"][1]["generation"] == conv[1]["generation"]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("conv/generation/gen/dist@2")) == 2
    off = _config("stages.conv.epochs=1", "eval.generation_every_epoch=0")
    _train(tiny_bundle, tmp_path / "off", off)
    assert not any("generation" in json.loads(l) for l in (tmp_path / "off" / "history.jsonl").read_text().splitlines())


def test_test_curve_scores_every_rec_epoch_and_changes_nothing(tiny_bundle, tmp_path):
    """eval.test_curve (Figure 2) adds the test scores of every recommendation epoch to the history;
    it draws no random numbers and selects nothing, so the trained weights are those of a run without."""
    import json
    plain, _ = _train(tiny_bundle, tmp_path / "a", _config("stages.conv.epochs=1"))
    curved, summary = _train(tiny_bundle, tmp_path / "b", _config("stages.conv.epochs=1", "eval.test_curve=true"))
    for key, value in plain.state_dict().items():
        assert torch.equal(value, curved.state_dict()[key]), key
    lines = [json.loads(l) for l in (tmp_path / "b" / "history.jsonl").read_text().splitlines()]
    rec = [l for l in lines if l["stage"] == "rec"]
    assert len(rec) == 3 and all("all/recall@10" in l["test_curve"] for l in rec)
    assert not any("test_curve" in l for l in lines if l["stage"] != "rec")


def test_conversation_validation_decodes_only_when_a_decoded_metric_selects(tiny_bundle, tmp_path):
    """Without an early-stop metric (the paper protocol, the long curves) or with "ppl", a
    conversation epoch validates by teacher-forced perplexity alone; decoding the whole validation
    split is paid only when the selection needs decoded responses (e.g. dist@2)."""
    import json
    for metric, decoded in (("null", False), ("ppl", False), ("dist@2", True)):
        run_dir = tmp_path / metric
        config = _config("stages.conv.epochs=1", "eval.generation_every_epoch=0",
                         f"stages.conv.early_stop_metric={metric}")
        _train(tiny_bundle, run_dir, config)
        conv = [json.loads(l) for l in (run_dir / "history.jsonl").read_text().splitlines()
                if json.loads(l)["stage"] == "conv"]
        assert "gen/ppl" in conv[0]["valid"]
        assert ("gen/dist@2" in conv[0]["valid"]) == decoded, metric


def test_cpu_bf16_runs_the_steps_in_bfloat16_and_keeps_float32_weights(tiny_bundle, tmp_path):
    """`train.cpu_bf16` (CPU): every stage's loss runs under bfloat16 autocast, the weights and the
    frozen knowledge cache stay float32, the losses stay near float32's, and validation and decoding
    afterwards run in float32; off (the default) no autocast is active."""
    seen = {}

    def recording(config, run_dir):
        seed_everything(config["run"]["seed"])
        model = KGSF(config["model"], tiny_bundle)
        for name in ("mim_loss", "rec_loss", "conv_loss"):
            original = getattr(model, name)

            def wrapped(batch, original=original, name=name):
                seen[(run_dir.name, name)] = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
                return original(batch)
            setattr(model, name, wrapped)
        summary = Trainer(model, build_instances(tiny_bundle), config, run_dir).fit()
        return model, summary

    fast, fast_summary = recording(_config("train.cpu_bf16=true"), tmp_path / "bf16")
    plain, plain_summary = recording(_config(), tmp_path / "fp32")
    for name in ("mim_loss", "rec_loss", "conv_loss"):
        assert seen[("bf16", name)] == (True, torch.bfloat16)
        assert seen[("fp32", name)][0] is False
    assert all(p.dtype == torch.float32 for p in fast.parameters())
    assert all(t.dtype == torch.float32 for t in fast.knowledge(frozen=True))
    for a, b in zip(fast_summary["stages"], plain_summary["stages"]):
        first_a, first_b = a["history"][0]["train_loss"], b["history"][0]["train_loss"]
        assert first_a != first_b and first_a == pytest.approx(first_b, rel=0.05), a["stage"]
    batch = fast.collate(build_instances(tiny_bundle)["test"].samples[:2], "conv")
    assert len(fast.generate(batch, max_length=4)) == 2


def test_run_json_says_which_stage_is_training_from_its_first_step(tiny_bundle, tmp_path):
    """`crsbench runs` reads run.json's progress: it names the stage from its start, not only after
    the first checkpoint or epoch (a conversation epoch on ReDial takes 15 minutes on the CPU)."""
    import json
    from crsbench.run_dir import RunDir
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_meta({"status": "running", "model": "kgsf", "dataset": "tiny"})
    config = _config("stages.pretrain.epochs=0")
    seed_everything(config["run"]["seed"])
    model = KGSF(config["model"], tiny_bundle)
    seen, original = [], model.rec_loss
    def recording(batch):
        seen.append(json.loads(run.meta_file.read_text()).get("progress"))
        return original(batch)
    model.rec_loss = recording
    Trainer(model, build_instances(tiny_bundle), config, run.path).fit()
    assert seen[0]["stage"] == "rec" and seen[0]["epoch"] == 0 and seen[0]["epochs"] == 3
