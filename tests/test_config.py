"""Layered configuration: order of layers, unknown keys, types, stages, YAML errors, --set parsing."""
from pathlib import Path

import pytest

from crsbench.config.loader import (load_saved_config, parse_override, resolve_config, save_config,
                                    stage_settings)
from crsbench.errors import ConfigError


def _classes(tmp_path, model_yaml: str, dataset_yaml: str | None = None):
    mpath = tmp_path / "model.yaml"
    mpath.write_text(model_yaml)
    class Model:
        config_file = mpath
    class Dataset:
        config_file = None
    if dataset_yaml is not None:
        dpath = tmp_path / "dataset.yaml"
        dpath.write_text(dataset_yaml)
        Dataset.config_file = dpath
    return Model, Dataset


MODEL = "model:\n  dim: 16\n  dropout: 0.1\nstages:\n  pretrain:\n    epochs: 2\n  rec: {}\ntrain:\n  lr: 0.01\n"


def test_each_layer_overrides_the_one_below(tmp_path):
    model, dataset = _classes(tmp_path, MODEL, "train:\n  lr: 0.02\n  batch_size: 8\n")
    user = tmp_path / "user.yaml"
    user.write_text("train:\n  batch_size: 4\nmodel:\n  dim: 32\n")
    cfg = resolve_config(model, dataset, user, ["model.dim=64", "stages.rec.lr=0.5"])
    assert cfg["train"]["lr"] == 0.02             # dataset over model
    assert cfg["train"]["batch_size"] == 4        # user over dataset
    assert cfg["model"]["dim"] == 64              # --set over user
    assert cfg["model"]["dropout"] == 0.1         # model default kept
    assert cfg["run"]["seed"] == 42               # built-in default
    assert stage_settings(cfg, "pretrain")["epochs"] == 2
    assert stage_settings(cfg, "rec")["lr"] == 0.5
    assert stage_settings(cfg, "rec")["epochs"] == 1   # train default


@pytest.mark.parametrize("override, fragment", [
    ("train.lrate=0.1", "did you mean 'lr'"),
    ("model.dimm=3", "did you mean 'dim'"),
    ("stages.recc.epochs=1", "did you mean 'rec'"),
    ("stages.rec.epoch=1", "did you mean 'epochs'"),
    ("trian.lr=1", "did you mean 'train'"),
])
def test_unknown_keys_are_errors_with_a_suggestion(tmp_path, override, fragment):
    model, dataset = _classes(tmp_path, MODEL)
    with pytest.raises(ConfigError) as err:
        resolve_config(model, dataset, None, [override])
    assert fragment in str(err.value) and "--set" in str(err.value)


@pytest.mark.parametrize("override", ["train.epochs=abc", "train.epochs=1.5", "train.amp=3",
                                      "eval.ks=5", "train=3"])
def test_wrong_types_are_errors(tmp_path, override):
    model, dataset = _classes(tmp_path, MODEL)
    with pytest.raises(ConfigError):
        resolve_config(model, dataset, None, [override])


def test_int_is_accepted_for_float_and_null_accepts_anything(tmp_path):
    model, dataset = _classes(tmp_path, MODEL)
    cfg = resolve_config(model, dataset, None, ["train.lr=1", "data.dir=/x", "train.early_stop_metric=ppl"])
    assert cfg["train"]["lr"] == 1 and cfg["data"]["dir"] == "/x"


def test_user_file_errors_name_the_file_and_line(tmp_path):
    model, dataset = _classes(tmp_path, MODEL)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 0.1\n   batch_size: 3\n")
    with pytest.raises(ConfigError) as err:
        resolve_config(model, dataset, bad)
    assert f"{bad}:3" in str(err.value)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  optimiser: adam\n")
    with pytest.raises(ConfigError) as err:
        resolve_config(model, dataset, unknown)
    assert str(unknown) in str(err.value) and "optimizer" in str(err.value)


def test_model_without_yaml_has_no_model_keys(tmp_path):
    class Plain:
        config_file = None
    with pytest.raises(ConfigError):
        resolve_config(Plain, Plain, None, ["model.anything=1"])


def test_set_parsing():
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("a=0.5") == {"a": 0.5}
    assert parse_override("a=true") == {"a": True}
    assert parse_override("a=[1, 2]") == {"a": [1, 2]}
    assert parse_override("a=null") == {"a": None}
    assert parse_override("a=-MIM") == {"a": "-MIM"}
    with pytest.raises(ConfigError):
        parse_override("no_equals_sign")


def test_saved_config_round_trips(tmp_path):
    model, dataset = _classes(tmp_path, MODEL)
    cfg = resolve_config(model, dataset)
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_saved_config(tmp_path / "run" / "config.yaml") == cfg


def test_a_users_train_setting_reaches_every_stage_a_lower_layer_set(tmp_path):
    """The model's YAML sets stages.pretrain.epochs; the user's train.epochs must not lose to it
    silently, unless the user also sets that stage's own value."""
    model, dataset = _classes(tmp_path, MODEL)
    cfg = resolve_config(model, dataset, None, ["train.epochs=1"])
    assert stage_settings(cfg, "pretrain")["epochs"] == 1 and stage_settings(cfg, "rec")["epochs"] == 1
    cfg = resolve_config(model, dataset, None, ["train.epochs=1", "stages.pretrain.epochs=5"])
    assert stage_settings(cfg, "pretrain")["epochs"] == 5 and stage_settings(cfg, "rec")["epochs"] == 1
    user = tmp_path / "user.yaml"
    user.write_text("train:\n  epochs: 7\n")
    cfg = resolve_config(model, dataset, user, ["stages.pretrain.epochs=3"])
    assert stage_settings(cfg, "pretrain")["epochs"] == 3 and stage_settings(cfg, "rec")["epochs"] == 7
    # within one layer the stage entry is the more specific one and wins
    same = tmp_path / "same.yaml"
    same.write_text("train:\n  epochs: 7\nstages:\n  pretrain:\n    epochs: 2\n")
    cfg = resolve_config(model, dataset, same)
    assert stage_settings(cfg, "pretrain")["epochs"] == 2 and stage_settings(cfg, "rec")["epochs"] == 7


def test_real_kgsf_user_epochs_reach_every_stage():
    from crsbench.registry import get_dataset, get_model
    cfg = resolve_config(get_model("kgsf"), get_dataset("redial"), None, ["train.epochs=1"])
    assert [stage_settings(cfg, s)["epochs"] for s in ("pretrain", "rec", "conv")] == [1, 1, 1]
    assert stage_settings(cfg, "conv")["batch_size"] == 32          # other stage settings stay


def test_describe_names_the_layer_of_every_value(tmp_path):
    from crsbench.config.loader import describe, resolve_with_sources
    model, dataset = _classes(tmp_path, MODEL, "train:\n  batch_size: 8\n")
    cfg, sources = resolve_with_sources(model, dataset, None, ["train.epochs=4"])
    text = describe(cfg, sources)
    lines = {line.split(":")[0]: line for line in text.splitlines() if not line.startswith("#")}
    assert lines["train.lr"].endswith("# model (model.yaml)")
    assert lines["train.batch_size"].endswith("# dataset (dataset.yaml)")
    assert lines["run.seed"].endswith("# defaults")
    assert lines["stages.pretrain.epochs"].endswith("# --set train.epochs=4")
    assert "stages.rec.batch_size: 8" in lines["stages.rec.batch_size"]


@pytest.mark.parametrize("override, key", [
    ("train.lr=0", "train.lr"), ("train.lr=-0.1", "train.lr"), ("stages.rec.lr=-1", "stages.rec.lr"),
    ("train.batch_size=0", "train.batch_size"), ("train.epochs=-1", "train.epochs"),
    ("run.seed=-1", "run.seed"), ("run.seed=4294967296", "run.seed"), ("eval.splits=[test,bogus]", "eval.splits"),
    ("eval.splits=[]", "eval.splits"), ("eval.ks=[0,10]", "eval.ks"), ("eval.batch_size=0", "eval.batch_size"),
    ("train.checkpoint_minutes=0", "train.checkpoint_minutes"),
])
def test_range_checks_name_the_key_and_its_layer(tmp_path, override, key):
    from crsbench.config.loader import check_ranges, resolve_with_sources
    model, dataset = _classes(tmp_path, MODEL)
    cfg, sources = resolve_with_sources(model, dataset, None, [override])
    with pytest.raises(ConfigError) as err:
        check_ranges(cfg, ("train", "valid", "test"), sources)
    assert err.value.message.startswith(key) and f"--set {override}" in err.value.message
    check_ranges(resolve_config(model, dataset), ("train", "valid", "test"))     # the defaults pass


def test_set_reads_exponent_floats_without_a_dot():
    assert parse_override("train.lr=1e-4") == {"train": {"lr": 1e-4}}
    assert parse_override("train.lr=2.5E+3") == {"train": {"lr": 2500.0}}
    assert parse_override("run.tag=e5") == {"run": {"tag": "e5"}}


def test_paper_protocol_sets_the_releases_choices_and_speaks_to_every_model():
    """`--protocol paper` gives KGSF the release's deliberate recommender choices and 90 last-epoch
    conversation epochs; models without those settings or stages resolve without errors; and every
    model setting a shipped protocol names exists in some registered model (a typo would be skipped)."""
    from crsbench.config.loader import protocol_layer, protocols
    from crsbench.registry import get_dataset, get_model, list_models
    import yaml
    layer = protocol_layer("paper")
    kgsf = resolve_config(get_model("kgsf"), get_dataset("redial"), None, (), layer)
    assert kgsf["model"]["mim_form"] == "release" and kgsf["model"]["rec_turns"] == "all"
    assert kgsf["train"]["amsgrad"] is True and kgsf["stages"]["rec"]["carry_optimizer"] is True
    assert kgsf["model"]["rgcn_aggr"] == "mean" and kgsf["data"]["kg_edges"] == "crsbench"   # accidents stay out
    assert kgsf["stages"]["conv"]["epochs"] == 90 and kgsf["stages"]["conv"]["restore_best"] is False
    for name in ("kbrd", "transformer", "textcnn", "popularity"):
        config = resolve_config(get_model(name), get_dataset("redial"), None, (), layer)
        assert "mim_form" not in config["model"] and config["data"]["release_instances"] is True
    declared = set()
    for name in list_models():
        declared |= set(resolve_config(get_model(name), get_dataset("redial"))["model"])
    for protocol in protocols():
        keys = set((yaml.safe_load(protocol_layer(protocol)[0][1].read_text()) or {}).get("model") or {})
        assert keys <= declared, (protocol, keys - declared)
