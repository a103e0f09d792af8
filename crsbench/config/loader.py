"""Layered configuration: built-in defaults < model YAML < dataset YAML < user YAML < --set a.b=c.

The keys that exist are those of defaults.yaml plus what the model's YAML declares under `model:`
and `stages:`. A later layer may only set keys that exist; each `stages.<name>` entry may only use
keys of `train:`. Unknown keys and wrong types are errors that name the layer and the dotted key
and suggest the closest valid key.
"""
from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from crsbench.atomic import atomic_write_text
from crsbench.errors import ConfigError

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
PROTOCOLS_DIR = Path(__file__).with_name("protocols")
DEFAULT_PROTOCOL = "crsbench"
# settings that say where things are or run, not what is computed: two configs that differ only in
# these describe the same experiment (the sweep planner's cell matching, `crsbench show`)
LOCATION_SETTINGS = ("run.output_dir", "run.device", "data.dir", "data.cache_dir", "data.download")
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


def _deep_update(base: dict, layer: dict) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


Sources = dict[str, tuple[int, str]]       # dotted key -> (layer rank, layer label)


def _mark(sources: Sources, tree: dict, prefix: str, rank: int, label: str) -> None:
    """Record `label` as the source of every leaf of `tree` (a layer that set a whole section)."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            _mark(sources, value, f"{prefix}{key}.", rank, label)
        else:
            sources[f"{prefix}{key}"] = (rank, label)


def _merge(base: dict, layer: dict, source: str, prefix: str = "", stage_keys: dict | None = None,
           sources: Sources | None = None, rank: int = 0, label: str = "") -> None:
    """Merge `layer` into `base` in place, checking every key against `base`; note each key's source."""
    sources = {} if sources is None else sources
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
                sources[f"{dotted}.{skey}"] = (rank, label)
            continue
        if key not in base:
            raise ConfigError(f"{source}: unknown key '{dotted}'", hint=_suggest(key, list(base)))
        current = base[key]
        if isinstance(current, dict) and isinstance(value, dict):
            _merge(current, value, source, dotted + ".", stage_keys, sources, rank, label)
            continue
        if not _type_ok(current, value):
            raise ConfigError(f"{source}: '{dotted}' should be {type(current).__name__}, got {value!r}",
                              hint=f"the default is {current!r}")
        base[key] = copy.deepcopy(value)
        if isinstance(value, dict) and value:
            _mark(sources, value, dotted + ".", rank, label)
        else:
            sources[dotted] = (rank, label)


_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


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
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        value = float(value)          # YAML 1.1 reads 1e-4 (no dot) as a string
    out: dict = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def resolve_with_sources(model_cls: type, dataset_cls: type, user_file: str | Path | None = None,
                         overrides: Sequence[str] = (), extra_layers: Sequence[tuple[str, Path]] = ()
                         ) -> tuple[dict, dict[str, str]]:
    """The resolved configuration of one run and, per dotted key, the layer that set it.

    Layers, lowest first: defaults, the model's YAML, the dataset's YAML, `extra_layers` (label,
    file; the protocol's layer, see protocol_layer), the user's file, `--set`. A stage's setting comes from whichever of `train.<key>` and
    `stages.<stage>.<key>` was set by the higher layer (the stage entry wins within one layer), so
    a user's `--set train.epochs=1` reaches every stage, unless the user also sets a stage's own.
    """
    config = read_yaml(DEFAULTS_FILE)
    sources: Sources = {}
    _mark(sources, config, "", 0, "defaults")
    model_files = getattr(model_cls, "config_file", None)
    if isinstance(model_files, (str, Path)):
        model_files = [model_files]
    model_layers = [(Path(f), read_yaml(f)) for f in model_files or ()]
    # the model's YAML files (shared ones first) declare the keys of the open sections ...
    for section in _OPEN_SECTIONS:
        config[section] = {}
        for path, layer in model_layers:
            declared = layer.pop(section, None) or {}
            if not isinstance(declared, dict):
                raise ConfigError(f"{path}: '{section}' must be a mapping", hint="fix the model's YAML")
            _deep_update(config[section], declared)
            _mark(sources, declared, f"{section}.", 1, f"model ({path.name})")
    for name, entry in config["stages"].items():
        for key in entry or {}:
            if key not in config["train"]:
                raise ConfigError(f"{model_layers[-1][0]}: unknown key 'stages.{name}.{key}'",
                                  hint=_suggest(key, list(config["train"])))
        config["stages"][name] = entry or {}
    # ... then may set any existing key
    for path, layer in model_layers:
        _merge(config, layer, str(path), stage_keys=config["train"], sources=sources, rank=1,
               label=f"model ({path.name})")
    layers: list[tuple[str, Path]] = []
    dataset_file = getattr(dataset_cls, "config_file", None)
    if dataset_file is not None:
        layers.append((f"dataset ({Path(dataset_file).name})", Path(dataset_file)))
    for label, path in extra_layers:
        layers.append((label, path))
    if user_file is not None:
        layers.append((f"file ({user_file})", Path(user_file)))
    rank = 2
    for label, path in layers:
        layer = read_yaml(path)
        if label.startswith("protocol"):          # a protocol speaks to every model: skip foreign stages
            stages = layer.get("stages") or {}     # and the model settings this model does not have
            layer["stages"] = {k: v for k, v in stages.items() if k in config["stages"]}
            layer["model"] = {k: v for k, v in (layer.get("model") or {}).items() if k in config["model"]}
        _merge(config, layer, str(path), stage_keys=config["train"], sources=sources, rank=rank, label=label)
        rank += 1
    for text in overrides:
        _merge(config, parse_override(text), f"--set {text}", stage_keys=config["train"], sources=sources,
               rank=rank, label=f"--set {text}")
    _settle_stage_keys(config, sources)
    return config, {key: label for key, (_, label) in sources.items()}


def _settle_stage_keys(config: dict, sources: Sources) -> None:
    """Drop each `stages.<s>.<key>` that a higher layer's `train.<key>` overrides."""
    for name, entry in config["stages"].items():
        for key in list(entry):
            own = sources.get(f"stages.{name}.{key}", (0, ""))
            general = sources.get(f"train.{key}", (0, ""))
            if general[0] > own[0]:
                del entry[key]
                sources.pop(f"stages.{name}.{key}", None)


def protocols() -> list[str]:
    """The protocols shipped with crsbench (crsbench/config/protocols/<name>.yaml)."""
    return sorted(p.stem for p in PROTOCOLS_DIR.glob("*.yaml"))


def protocol_layer(name: str | None) -> list[tuple[str, Path]]:
    """The config layer of a named protocol (between the dataset's YAML and the user's file)."""
    name = name or DEFAULT_PROTOCOL
    path = PROTOCOLS_DIR / f"{name}.yaml"
    if not path.exists():
        known = protocols()
        close = difflib.get_close_matches(name, known, n=1)
        raise ConfigError(f"--protocol {name}: unknown protocol",
                          hint=f"did you mean '{close[0]}'?" if close else f"protocols: {', '.join(known)}")
    return [(f"protocol {name} ({path.name})", path)]


def resolve_config(model_cls: type, dataset_cls: type, user_file: str | Path | None = None,
                   overrides: Sequence[str] = (), extra_layers: Sequence[tuple[str, Path]] = ()) -> dict:
    """The resolved configuration of one run (a plain nested dict); see resolve_with_sources."""
    return resolve_with_sources(model_cls, dataset_cls, user_file, overrides, extra_layers)[0]


def _flow(value) -> str:
    """A value as one line of YAML flow style."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def describe(config: dict, sources: dict[str, str]) -> str:
    """Every resolved setting with the layer it came from, then each stage's effective training
    settings (what `crsbench run --dry-run` prints)."""
    rows: list[tuple[str, str]] = []

    def walk(tree: dict, prefix: str) -> None:
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            if dotted == "stages":
                continue
            if isinstance(value, dict) and value:
                walk(value, dotted + ".")
            else:
                rows.append((f"{dotted}: {_flow(value)}", sources.get(dotted, "defaults")))
    walk(config, "")
    for stage, own in config["stages"].items():
        rows.append((f"# stage '{stage}' (effective training settings)", ""))
        for key, value in stage_settings(config, stage).items():
            dotted = f"stages.{stage}.{key}" if key in (own or {}) else f"train.{key}"
            rows.append((f"stages.{stage}.{key}: {_flow(value)}", sources.get(dotted, "defaults")))
    width = max(len(text) for text, _ in rows) + 2
    return "\n".join(f"{text:<{width}}# {source}" if source else text for text, source in rows)


SEED_MAX = 2**32 - 1
# training settings that must be positive (> 0) or at least a bound
_POSITIVE = ("lr", "lr_gamma", "checkpoint_minutes")
_AT_LEAST = {"batch_size": 1, "epochs": 0, "early_stop_patience": 1, "log_every": 1, "grad_clip": 0,
             "weight_decay": 0}


def _where(key: str, sources: dict[str, str] | None) -> str:
    source = (sources or {}).get(key)
    return f"{key} (from {source})" if source else key


def check_ranges(config: dict, splits: Sequence[str], sources: dict[str, str] | None = None) -> None:
    """Values that are well typed but cannot work, caught before anything runs; the error names the
    key and the layer that set it."""
    def fail(key: str, problem: str, hint: str) -> None:
        raise ConfigError(f"{_where(key, sources)}: {problem}", hint=hint)

    seed = config["run"]["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        fail("run.seed", f"{seed!r} is not an integer in 0..{SEED_MAX}", "use e.g. --seed 1")
    for stage in config["stages"]:
        settings = stage_settings(config, stage)
        where = {k: f"stages.{stage}.{k}" if k in (config["stages"][stage] or {}) else f"train.{k}" for k in settings}
        for key in _POSITIVE:
            value = settings.get(key)
            if value is not None and not value > 0:
                fail(where[key], f"must be > 0 (stage '{stage}'), got {value!r}",
                     f"e.g. --set {where[key]}=0.001" if key == "lr" else f"give {where[key]} a positive value")
        for key, low in _AT_LEAST.items():
            value = settings.get(key)
            if value is not None and value < low:
                fail(where[key], f"must be >= {low} (stage '{stage}'), got {value!r}",
                     f"give {where[key]} a value >= {low}")
    fraction = config["data"].get("train_fraction", 1.0)
    if not 0 < fraction <= 1:
        fail("data.train_fraction", f"must be in (0, 1], got {fraction!r}", "e.g. --set data.train_fraction=0.5")
    ev = config["eval"]
    if ev.get("max_samples") is not None and (not isinstance(ev["max_samples"], int) or ev["max_samples"] < 1):
        fail("eval.max_samples", f"{ev['max_samples']!r} is not a positive integer", "use null for all samples")
    if not ev["splits"]:
        fail("eval.splits", "is empty", f"choose among {', '.join(splits)}")
    unknown = [s for s in ev["splits"] if s not in splits]
    if unknown:
        fail("eval.splits", f"unknown split(s) {', '.join(map(repr, unknown))}",
             f"choose among {', '.join(splits)}")
    for key in ("batch_size", "max_length", "beam_size"):
        value = ev[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(f"eval.{key}", f"{value!r} is not a positive integer", f"set eval.{key} to 1 or more")
    for k in ev["ks"]:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            fail("eval.ks", f"cut-off {k!r} is not a positive integer", "e.g. --set eval.ks=[1,10,50]")


def stage_settings(config: dict, stage: str) -> dict:
    """The training settings of one stage: `train:` overridden by `stages.<stage>`."""
    return {**config["train"], **(config["stages"].get(stage) or {})}


def fill_defaults(defaults: dict, found: dict, prefix: str = "") -> list[str]:
    """Copy into `found` (a saved config) the settings of `defaults` it lacks; returns their dotted
    names. A run saved before a setting existed behaves as that setting's default. `stages` entries
    are not filled: they are sparse on purpose (a higher layer's train.* replaced them)."""
    out = []
    for key, value in defaults.items():
        if not prefix and key == "stages":
            continue
        if key not in found:
            found[key] = copy.deepcopy(value)
            out.append(f"{prefix}{key}")
        elif isinstance(value, dict) and isinstance(found[key], dict):
            out += fill_defaults(value, found[key], f"{prefix}{key}.")
    return out


def save_config(config: dict, path: str | Path) -> None:
    """Write the resolved config (atomically) so the run can be reproduced and re-evaluated."""
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def load_saved_config(path: str | Path) -> dict:
    """Read a config written by save_config."""
    return read_yaml(path)
