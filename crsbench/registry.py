"""Registries of models and datasets, filled by entry points (per kind, when that kind is asked for)
and by the decorators (in-process registration).

Every model and dataset, built-in or not, is an entry point of an installed distribution: group
``crsbench.models`` or ``crsbench.datasets``, name = the registered name, value = the module whose
decorators register it (see setup.py; a third-party package declares its own). Asking for a dataset
imports dataset modules only, never a model (nor torch through one); asking for one name imports
that entry point alone. A plugin that fails to import is reported by name, module and package, and
the others still load.
"""
from __future__ import annotations

import difflib
from importlib import metadata
from typing import Callable, TypeVar

from loguru import logger

from crsbench.errors import ConfigError

MODEL_ENTRY_POINT_GROUP = "crsbench.models"
DATASET_ENTRY_POINT_GROUP = "crsbench.datasets"
T = TypeVar("T")

_MODELS: dict[str, type] = {}
_DATASETS: dict[str, Callable] = {}
_KINDS = {"model": (_MODELS, MODEL_ENTRY_POINT_GROUP), "dataset": (_DATASETS, DATASET_ENTRY_POINT_GROUP)}
_loaded: set[str] = set()               # kinds whose entry points have all been loaded
_failed: dict[str, str] = {}            # "group:name" -> why it did not load


def _register(table: dict, kind: str, name: str) -> Callable[[T], T]:
    def decorator(obj: T) -> T:
        existing = table.get(name)
        if existing is not None and existing is not obj:
            raise ConfigError(f"{kind} '{name}' is registered twice ({existing!r} and {obj!r})",
                              hint=f"give one of them another name in @register_{kind}(...)")
        table[name] = obj
        obj.registered_name = name  # type: ignore[attr-defined]
        return obj
    return decorator


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator: make a CRSModel subclass available as `--model name`."""
    return _register(_MODELS, "model", name)


def register_dataset(name: str) -> Callable[[T], T]:
    """Decorator for a dataset builder (a DatasetSpec subclass): available as `--dataset name`."""
    return _register(_DATASETS, "dataset", name)


def _entry_points(kind: str) -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=_KINDS[kind][1]))


def _load(kind: str, ep: metadata.EntryPoint) -> None:
    key = f"{ep.group}:{ep.name}"
    if key in _failed:
        return
    try:
        ep.load()
    except Exception as exc:          # a broken plugin must not break the others
        package = getattr(getattr(ep, "dist", None), "name", None) or "an unknown package"
        _failed[key] = (f"{kind} plugin '{ep.name}' ({ep.value}, from {package}) failed to load: "
                        f"{type(exc).__name__}: {exc}")
        logger.warning(_failed[key])


def load_plugins(kind: str = "model", name: str | None = None) -> None:
    """Import the entry points of one kind: the one called `name`, or (name None) all of them."""
    if kind in _loaded:
        return
    points = _entry_points(kind)
    if name is not None:
        chosen = [ep for ep in points if ep.name == name]
        if chosen:
            for ep in chosen:
                _load(kind, ep)
            return
    for ep in points:
        _load(kind, ep)
    _loaded.add(kind)


def _lookup(kind: str, name: str):
    table = _KINDS[kind][0]
    if name not in table:
        load_plugins(kind, name)
    if name not in table:
        load_plugins(kind)
    if name not in table:
        broken = _failed.get(f"{_KINDS[kind][1]}:{name}")
        if broken:
            raise ConfigError(broken, hint="fix or reinstall that package")
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known {kind}s: {', '.join(sorted(table)) or '(none)'}"
        if not table:
            hint += " (no entry points found: install crsbench with `pip install -e .`)"
        raise ConfigError(f"unknown {kind} '{name}'", hint=hint)
    return table[name]


def get_model(name: str) -> type:
    """The model class registered as `name` (error with a suggestion if unknown)."""
    return _lookup("model", name)


def get_dataset(name: str):
    """The dataset builder registered as `name` (error with a suggestion if unknown)."""
    return _lookup("dataset", name)


def list_models() -> list[str]:
    load_plugins("model")
    return sorted(_MODELS)


def list_datasets() -> list[str]:
    load_plugins("dataset")
    return sorted(_DATASETS)


def broken_plugins() -> list[str]:
    """Why each plugin that failed to load did not load (for `crsbench list`)."""
    return list(_failed.values())
