"""Registries of models and datasets, filled by decorators and by the `crsbench.models` entry points.

Built-in modules register with the decorators when imported. External packages (and our own
`baselines/`) declare an entry point in the group ``crsbench.models``; loading it imports the module,
whose decorators register its models. Nothing in crsbench names a plugin model.
"""
from __future__ import annotations

import difflib
import importlib
from importlib import metadata
from typing import Callable, TypeVar

from loguru import logger

from crsbench.errors import ConfigError

MODEL_ENTRY_POINT_GROUP = "crsbench.models"
T = TypeVar("T")

_MODELS: dict[str, type] = {}
_DATASETS: dict[str, Callable] = {}
_BUILTIN_MODULES = ("crsbench.datasets.redial", "crsbench.datasets.opendialkg", "crsbench.models")
_loaded = False


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


def load_plugins() -> None:
    """Import built-in modules and every installed `crsbench.models` entry point (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a built-in module not written yet must not hide the rest
            if exc.name != module:
                raise
    for ep in metadata.entry_points(group=MODEL_ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the others
            logger.warning(f"could not load model plugin '{ep.name}' ({ep.value}): {exc}")


def _lookup(table: dict, kind: str, name: str):
    load_plugins()
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known {kind}s: {', '.join(sorted(table))}"
        raise ConfigError(f"unknown {kind} '{name}'", hint=hint)
    return table[name]


def get_model(name: str) -> type:
    """The model class registered as `name` (error with a suggestion if unknown)."""
    return _lookup(_MODELS, "model", name)


def get_dataset(name: str):
    """The dataset builder registered as `name` (error with a suggestion if unknown)."""
    return _lookup(_DATASETS, "dataset", name)


def list_models() -> list[str]:
    load_plugins()
    return sorted(_MODELS)


def list_datasets() -> list[str]:
    load_plugins()
    return sorted(_DATASETS)
