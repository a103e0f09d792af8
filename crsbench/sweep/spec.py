"""Sweep files: a grid of ordinary runs (rows x seeds x datasets) declared in one YAML file.

```yaml
name: table2-redial            # shown in progress and the final table
datasets: [redial]
seeds: [1, 2, 3]
set: {eval.batch_size: 256}  # optional: --set overrides for every row (or a list of KEY=VALUE)
protocol: crsbench             # optional: the protocol of every row (a row may set its own)
output_dir: runs               # optional: the runs root (default: the config's run.output_dir)
rows:
  - model: popularity
  - model: kgsf
    tag: -MIM                  # run.tag: its own row in `compare`
    set: {run.tasks: [rec], model.mim: false}
  - name: kgsf-conv            # optional name (default: model + tag, e.g. kgsf-MIM), what init_from names
    model: kgsf
    init_from: kgsf            # train on the finished run of row `kgsf`, same seed and dataset
    set: {run.tasks: [conv]}
```

A row may also narrow `datasets` and `seeds`. Unknown keys are errors with suggestions, as in the
config; every row's overrides are resolved (and range-checked) when the file is read, so a typo
fails before the first cell trains.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path

from crsbench.config.loader import read_yaml
from crsbench.errors import ConfigError

SWEEP_KEYS = ("name", "datasets", "seeds", "set", "protocol", "output_dir", "rows")
ROW_KEYS = ("name", "model", "tag", "set", "protocol", "init_from", "datasets", "seeds")


@dataclass
class Row:
    name: str
    model: str
    tag: str = ""
    overrides: list[str] = field(default_factory=list)
    protocol: str | None = None
    init_from: str | None = None
    datasets: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


@dataclass
class Sweep:
    name: str
    path: Path
    rows: list[Row]
    output_dir: str | None = None
    seed_order: tuple[int, ...] = ()      # `--seeds 3 1`: seed 3's cells before seed 1's (default: ascending)

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)


@dataclass(frozen=True)
class Cell:
    """One ordinary run: a row on one dataset with one seed."""

    row: str
    dataset: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.row} / {self.dataset} / seed {self.seed}"


def _check_keys(where: str, found: dict, allowed: tuple[str, ...]) -> None:
    for key in found:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(allowed)}"
            raise ConfigError(f"{where}: unknown key '{key}'", hint=hint)


def _overrides(where: str, value) -> list[str]:
    """`set:` as a list of "key=value" strings or a mapping of dotted keys to values."""
    if value is None:
        return []
    if isinstance(value, dict):
        import yaml
        return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                for k, v in value.items()]
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return list(value)
    raise ConfigError(f"{where}: 'set' must be a list of KEY=VALUE strings or a mapping",
                      hint="e.g. set: [run.tasks=[rec], model.mim=false]")


def _int_list(where: str, key: str, value) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
        raise ConfigError(f"{where}: '{key}' must be a non-empty list of integers", hint=f"e.g. {key}: [1, 2, 3]")
    return value


def _str_list(where: str, key: str, value) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{key}' must be a non-empty list of names", hint=f"e.g. {key}: [redial]")
    return value


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file (keys, row names, init_from references)."""
    path = Path(path)
    data = read_yaml(path)
    _check_keys(str(path), data, SWEEP_KEYS)
    if not isinstance(data.get("rows"), list) or not data["rows"]:
        raise ConfigError(f"{path}: 'rows' must be a non-empty list", hint="e.g. rows: [{model: popularity}]")
    datasets = _str_list(str(path), "datasets", data.get("datasets", ["redial"]))
    seeds = _int_list(str(path), "seeds", data.get("seeds", [1]))
    common = _overrides(str(path), data.get("set"))
    rows: list[Row] = []
    for i, entry in enumerate(data["rows"]):
        where = f"{path}: rows[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: a row must be a mapping", hint="e.g. - {model: kbrd, set: [run.tasks=[rec]]}")
        _check_keys(where, entry, ROW_KEYS)
        if not isinstance(entry.get("model"), str):
            raise ConfigError(f"{where}: 'model' is required", hint="e.g. model: kgsf (see `crsbench list`)")
        tag = str(entry.get("tag") or "")
        default = entry["model"] + (tag if tag[:1] in ("", "-", "_") else f"-{tag}")
        row = Row(name=str(entry.get("name") or default), model=entry["model"], tag=tag,
                  overrides=common + _overrides(where, entry.get("set")),
                  protocol=entry.get("protocol", data.get("protocol")), init_from=entry.get("init_from"),
                  datasets=_str_list(where, "datasets", entry.get("datasets", datasets)),
                  seeds=_int_list(where, "seeds", entry.get("seeds", seeds)))
        if any(r.name == row.name for r in rows):
            raise ConfigError(f"{where}: a second row named '{row.name}'", hint="give one of them its own 'name'")
        rows.append(row)
    names = [r.name for r in rows]
    for i, row in enumerate(rows):
        if row.init_from is not None:
            if row.init_from not in names:
                close = difflib.get_close_matches(row.init_from, names, n=1)
                raise ConfigError(f"{path}: rows[{i}] init_from '{row.init_from}' names no row",
                                  hint=f"did you mean '{close[0]}'?" if close else f"rows: {', '.join(names)}")
            source = next(r for r in rows if r.name == row.init_from)
            if names.index(source.name) > i:
                raise ConfigError(f"{path}: rows[{i}] init_from '{row.init_from}' comes after it",
                                  hint="list a source row before the rows that start from it")
            if source.model != row.model or source is row:
                raise ConfigError(f"{path}: rows[{i}] init_from '{row.init_from}' is a {source.model} row",
                                  hint="init_from needs a row of the same model (and it cannot be the row itself)")
            missing = [(d, s) for d in row.datasets for s in row.seeds
                       if d not in source.datasets or s not in source.seeds]
            if missing:
                raise ConfigError(f"{path}: rows[{i}] needs row '{source.name}' on {missing[0][0]} seed {missing[0][1]}",
                                  hint="give the source row the same datasets and seeds")
    name = str(data.get("name") or path.stem)
    return Sweep(name, path, rows, data.get("output_dir"))


def cells(sweep: Sweep) -> list[Cell]:
    """Every (row, dataset, seed) of the sweep, seed by seed (ascending, or in `--seeds` order) and in
    file order within a seed: a whole seed of the table comes first, and a row's source (an earlier
    row) comes before it. This is the order the driver starts cells in."""
    rank = {seed: i for i, seed in enumerate(sweep.seed_order)}
    in_file_order = [Cell(r.name, d, s) for r in sweep.rows for d in r.datasets for s in r.seeds]
    return sorted(in_file_order, key=lambda c: (rank.get(c.seed, len(rank)), c.seed))     # stable sort


def narrow(sweep: Sweep, rows: list[str] | None = None, seeds: list[int] | None = None) -> Sweep:
    """The part of a sweep to run now (`crsbench sweep --rows/--seeds`), e.g. seed 1 of every row first.
    `seeds` in the order to run them: `[3, 1]` starts seed 1's cells only when no cell of seed 3 can start.

    A kept row brings the rows it starts from (init_from), so its cells can still be planned; the
    narrowed sweep's cells are the full sweep's, so a later full run finds them done."""
    names = [r.name for r in sweep.rows]
    for name in rows or []:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            raise ConfigError(f"--rows: {sweep.path} has no row '{name}'",
                              hint=f"did you mean '{close[0]}'?" if close else f"rows: {', '.join(names)}")
    every_seed = sorted({s for r in sweep.rows for s in r.seeds})
    for seed in seeds or []:
        if seed not in every_seed:
            raise ConfigError(f"--seeds: {sweep.path} has no seed {seed}",
                              hint=f"its seeds: {', '.join(map(str, every_seed))}")
    wanted = set(rows or names)
    for row in reversed(sweep.rows):                    # a source comes before the rows that use it
        if row.name in wanted and row.init_from:
            wanted.add(row.init_from)
    kept = [replace(row, seeds=[s for s in row.seeds if seeds is None or s in seeds])
            for row in sweep.rows if row.name in wanted]
    return replace(sweep, rows=[row for row in kept if row.seeds], seed_order=tuple(seeds or ()))
