"""Loading a registered dataset: data directory -> (cached) bundle -> evaluation instances."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from crsbench.datasets.base import resolve_cache_dir, resolve_data_dir
from crsbench.datasets.cache import load_or_build
from crsbench.datasets.instances import SplitInstances, build_instances
from crsbench.datasets.types import DatasetBundle
from crsbench.registry import get_dataset


@dataclass
class LoadedDataset:
    """A preprocessed dataset and its evaluation instances (shared by every model)."""

    bundle: DatasetBundle
    instances: dict[str, SplitInstances]


def load_dataset(name: str, data_settings: dict, data_dir: str | Path | None = None) -> LoadedDataset:
    """Resolve directories, make sure the raw files exist, load or build, build the instances."""
    spec = get_dataset(name)(resolve_data_dir(data_dir or data_settings.get("dir")), data_settings)
    spec.ensure_files()
    bundle = load_or_build(spec, resolve_cache_dir(data_settings.get("cache_dir")))
    instances = build_instances(bundle)
    for split, inst in instances.items():
        counts = ", ".join(f"{k}={v}" for k, v in inst.counts().items())
        logger.info(f"{name}/{split}: {counts}")
    return LoadedDataset(bundle, instances)
