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
