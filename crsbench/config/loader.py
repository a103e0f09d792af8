"""Layered configuration: built-in defaults < model YAML < dataset YAML < user YAML < --set a.b=c.

The keys that exist are those of defaults.yaml plus what the model's YAML declares under `model:`
and `stages:`. A later layer may only set keys that exist; each `stages.<name>` entry may only use
keys of `train:`. Unknown keys and wrong types are errors that name the layer and the dotted key
and suggest the closest valid key.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Sequence

import yaml

from crsbench.atomic import atomic_write_text
from crsbench.errors import ConfigError

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
_OPEN_SECTIONS = ("model", "stages")     # sections whose keys the model's YAML declares


def read_yaml(path: str | Path, layer: str | None = None) -> dict:
    """A YAML mapping from `path`; malformed YAML names the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found", hint="check the path given to --config") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: malformed YAML ({getattr(exc, 'problem', exc)})",
                          hint="fix the indentation or syntax on that line") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}",
                          hint="start the file with a section such as 'train:'")
    return data


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, dict):
        return isinstance(value, dict)
    if isinstance(default, list):
        return isinstance(value, list)
    return isinstance(value, type(default))


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(sorted(valid)) or '(none)'}"


def _merge(base: dict, layer: dict, source: str, prefix: str = "", stage_keys: dict | None = None) -> None:
    """Merge `layer` into `base` in place, checking every key against `base`."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if prefix == "stages." and stage_keys is not None:
            if key not in base:
                raise ConfigError(f"{source}: unknown stage '{dotted}'",
                                  hint=_suggest(key, list(base)) + " (stages are declared by the model)")
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{dotted}' must be a mapping of training settings",
                                  hint="e.g. stages: {rec: {epochs: 5}}")
            for skey, svalue in value.items():
                if skey not in stage_keys:
                    raise ConfigError(f"{source}: unknown key '{dotted}.{skey}'",
                                      hint=_suggest(skey, list(stage_keys)) + " (stage keys are those of train:)")
                if not _type_ok(stage_keys[skey], svalue):
                    raise ConfigError(f"{source}: '{dotted}.{skey}' should be {type(stage_keys[skey]).__name__}, "
                                      f"got {svalue!r}", hint="fix the value's type")
                base[key][skey] = svalue
            continue
        if key not in base:
            raise ConfigError(f"{source}: unknown key '{dotted}'", hint=_suggest(key, list(base)))
        current = base[key]
        if isinstance(current, dict) and isinstance(value, dict):
            _merge(current, value, source, dotted + ".", stage_keys)
            continue
        if not _type_ok(current, value):
            raise ConfigError(f"{source}: '{dotted}' should be {type(current).__name__}, got {value!r}",
                              hint=f"the default is {current!r}")
        base[key] = copy.deepcopy(value)


def parse_override(text: str) -> dict:
    """'train.lr=0.001' -> {'train': {'lr': 0.001}} (the value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE", hint="e.g. --set train.lr=0.0005")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {text!r}: empty key", hint="e.g. --set train.lr=0.0005")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def resolve_config(model_cls: type, dataset_cls: type, user_file: str | Path | None = None,
                   overrides: Sequence[str] = ()) -> dict:
    """The resolved configuration of one run (a plain nested dict)."""
    config = read_yaml(DEFAULTS_FILE)
    model_file = getattr(model_cls, "config_file", None)
    if model_file is not None:
        model_layer = read_yaml(model_file)
        # the model's YAML declares the keys of the open sections, then may set any existing key
        for section in _OPEN_SECTIONS:
            declared = model_layer.pop(section, None) or {}
            if not isinstance(declared, dict):
                raise ConfigError(f"{model_file}: '{section}' must be a mapping", hint="fix the model's YAML")
            config[section] = copy.deepcopy(declared)
        for name, entry in config["stages"].items():
            for key in entry or {}:
                if key not in config["train"]:
                    raise ConfigError(f"{model_file}: unknown key 'stages.{name}.{key}'",
                                      hint=_suggest(key, list(config["train"])))
            config["stages"][name] = entry or {}
        _merge(config, model_layer, str(model_file), stage_keys=config["train"])
    dataset_file = getattr(dataset_cls, "config_file", None)
    if dataset_file is not None:
        _merge(config, read_yaml(dataset_file), str(dataset_file), stage_keys=config["train"])
    if user_file is not None:
        _merge(config, read_yaml(user_file), str(user_file), stage_keys=config["train"])
    for text in overrides:
        _merge(config, parse_override(text), f"--set {text}", stage_keys=config["train"])
    return config


def stage_settings(config: dict, stage: str) -> dict:
    """The training settings of one stage: `train:` overridden by `stages.<stage>`."""
    return {**config["train"], **(config["stages"].get(stage) or {})}


def save_config(config: dict, path: str | Path) -> None:
    """Write the resolved config (atomically) so the run can be reproduced and re-evaluated."""
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def load_saved_config(path: str | Path) -> dict:
    """Read a config written by save_config."""
    return read_yaml(path)
