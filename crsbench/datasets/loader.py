"""Loading a registered dataset: data directory -> (cached) bundle -> evaluation instances."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from crsbench.datasets.base import DatasetSpec, resolve_cache_dir, resolve_data_dir
from crsbench.datasets.cache import load_or_build
from crsbench.datasets.instances import SplitInstances, build_instances
from crsbench.datasets.provenance import NOT_KEYED, DataVersion, keyed_settings
from crsbench.datasets.types import DatasetBundle
from crsbench.errors import DataError
from crsbench.registry import get_dataset
from crsbench.run_dir import RunDir, made_on_build


@dataclass
class LoadedDataset:
    """A preprocessed dataset and its evaluation instances (shared by every model)."""

    bundle: DatasetBundle
    instances: dict[str, SplitInstances]
    version: DataVersion


def dataset_spec(name: str, data_settings: dict, data_dir: str | Path | None = None) -> DatasetSpec:
    """The registered dataset's spec over the resolved data directory."""
    return get_dataset(name)(resolve_data_dir(data_dir or data_settings.get("dir")), data_settings)


def current_data_version(name: str, data_dir: str | Path | None = None) -> str | None:
    """The data version (the raw files' hash) the data directory holds now for a dataset: what
    `compare`, `plot` and `sweep` show results of by default. None, with a warning, when files are
    missing (then every data version is shown)."""
    try:
        return dataset_spec(name, {}, data_dir).data_version().files
    except DataError as exc:
        logger.warning(f"{exc.message}: cannot tell which data version is current, so runs on every data "
                       "version are shown")
        return None


def current_content(name: str, data_settings: dict, data_dir: str | Path | None = None) -> str:
    """The content digest of the preprocessing build this code makes of a dataset under these settings
    (read from the cache, built and cached first where missing): what `sweep --same-build` compares
    a finished run's `data.content` with."""
    return _bundle(dataset_spec(name, data_settings, data_dir), data_settings).content


class CurrentBuilds:
    """`current_content` per dataset and keyed data settings, each looked up once (a sweep or a table
    asks once per run), and whether a run was made on this code's build of its data: what
    `sweep --same-build` and `compare --same-build` keep."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir
        self._contents: dict[tuple, str] = {}

    def content(self, name: str, data_settings: dict) -> str:
        key = (name, repr(sorted(keyed_settings(data_settings).items())))
        if key not in self._contents:
            self._contents[key] = current_content(name, data_settings, self.data_dir)
        return self._contents[key]

    def made(self, run: RunDir) -> bool:
        """Whether `run` started (and resumed) on the build this code makes of the data its saved
        config names; its data and cache directories are this machine's, not the run's."""
        meta = run.read_meta()
        data = {k: v for k, v in (run.read_config().get("data") or {}).items() if k not in NOT_KEYED}
        return made_on_build(meta, self.content(meta["dataset"], data))


def _bundle(spec: DatasetSpec, data_settings: dict) -> DatasetBundle:
    """The raw files checked, then the preprocessed bundle from the cache (built where missing)."""
    spec.ensure_files()
    return load_or_build(spec, resolve_cache_dir(data_settings.get("cache_dir")))


def _check_not_empty(spec: DatasetSpec, instances: dict[str, SplitInstances]) -> None:
    """A split without samples or recommendation instances would train on nothing or score 0.0."""
    for split in spec.splits:
        inst = instances.get(split)
        if inst is None or not inst.samples or not inst.rec:
            what = "no samples" if inst is None or not inst.samples else "no recommendation instances"
            raise DataError(f"{spec.split_file(split)}: the {split} split has {what} (no recommender turn with "
                            "earlier context" + (")" if what == "no samples" else " that mentions an item)"),
                            hint="the file is empty or truncated: put the dataset's complete file there")


def load_dataset(name: str, data_settings: dict, data_dir: str | Path | None = None) -> LoadedDataset:
    """Resolve directories, make sure the raw files exist, load or build, build the instances."""
    spec = dataset_spec(name, data_settings, data_dir)
    bundle = _bundle(spec, data_settings)
    instances = build_instances(bundle)
    _check_not_empty(spec, instances)
    for split, inst in instances.items():
        counts = ", ".join(f"{k}={v}" for k, v in inst.counts().items())
        logger.info(f"{name}/{split}: {counts}")
    version = DataVersion(name, bundle.data_files, bundle.fingerprint, bundle.content)
    logger.info(f"{name}: data version {version.files[:10]}, fingerprint {version.short}, "
                f"preprocessed content {version.content[:10]}")
    return LoadedDataset(bundle, instances, version)
