"""`crsbench plot FIGURE`: the paper's figures from the results index and the run directories only.

- `mim-curve` (Figure 2): test Recall@10/@50 of KGSF with and without MIM against recommendation
  epochs, mean and min-max band over seeds, from runs trained with `eval.test_curve: true` (test
  scores per epoch for the curve only; the runs' reported metrics are those of the epoch restored
  by validation).
- `ablation` (Figure 3): KGSF's conversation variants as grouped bars (mean, error bar = sample std
  over seeds) of Dist-2/3/4 and Item Ratio: the numbers of `crsbench compare`, from the same store.
- `curves`: any per-epoch quantity of chosen runs (`history.jsonl`: train_loss, validation metrics,
  the generation curve of eval.generation_every_epoch, the test curve).
- `data-curve`: test Recall@10/@50 against training conversations (data.train_fraction runs), per
  model, mean and std over seeds, with each model's log-linear trend, optionally extrapolated.

No figure uses a run that a since-fixed defect could have changed (`fixed_defects.py`); `compare`
counts and notes such runs, a figure leaves them out (`plot ablation` prints which). A seed trained
more than once counts once, with its latest run, as in `compare`.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from crsbench.errors import ConfigError, CrsbenchError
from crsbench.results.compare import compare, content_of, row_label
from crsbench.results.fixed_defects import defects_of_run
from crsbench.results.history import history_value, read_history
from crsbench.results.size_order import ALPHA, pair_tests, reversals, size_orders
from crsbench.results.store import ResultStore
from crsbench.results.trend import LogTrend
from crsbench.run_dir import RunDir

if TYPE_CHECKING:
    from crsbench.datasets.loader import CurrentBuilds

FIGURES = ("mim-curve", "ablation", "curves", "data-curve")
ABLATION_ROWS = (("kgsf", ""), ("kgsf", "-KG-D"), ("kgsf", "-copy"), ("kgsf", "-MIM"), ("kgsf", "faithful"))
ABLATION_METRICS = ("gen/dist@2", "gen/dist@3", "gen/dist@4", "gen/item_ratio")
DATA_CURVE_KEYS = ("trends", "runs", "seeds")      # data_curve's entries that are not models


def _integer_ticks(ax) -> None:
    """Epochs are whole numbers: no tick at epoch 2.5."""
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _seeds(count: int) -> str:
    """A legend's seed count: "1 seed", "3 seeds"."""
    return f"{count} seed" if count == 1 else f"{count} seeds"


def save_figure(plt, fig, out: Path) -> None:
    """Lay the figure out and write it atomically (PNG, SVG or PDF by the suffix), then free it."""
    from crsbench.atomic import atomic_write
    fig.tight_layout()
    atomic_write(out, lambda handle: fig.savefig(handle, format=Path(out).suffix.lstrip(".") or "png"), mode="wb")
    plt.close(fig)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _band(series: list[list[float]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs (1..n over the shortest series), mean, min, max across series."""
    n = min(len(s) for s in series)
    columns = [[s[i] for s in series] for i in range(n)]
    return (list(range(1, n + 1)), [statistics.fmean(c) for c in columns], [min(c) for c in columns],
            [max(c) for c in columns])


def _finished(store: ResultStore, dataset: str, data_version: str | None) -> list[dict]:
    """The finished runs a figure may use: on the data version, and none a since-fixed defect touched."""
    return [r for r in store.runs(dataset=dataset) if r["status"] == "finished"
            and (data_version is None or r["data_version"] == data_version) and not defects_of_run(r["run_dir"])]


def mim_curve(store: ResultStore, dataset: str, out: Path, data_version: str | None = None) -> dict:
    """Figure 2; returns the plotted series {label: {metric: (epochs, mean, low, high)}}."""
    latest: dict[tuple[str, int], list[dict]] = {}                  # (label, seed) -> its latest run's curve
    for run in _finished(store, dataset, data_version):
        if run["model"] != "kgsf":
            continue
        lines = [h for h in read_history(run["run_dir"]) if h["stage"] == "rec" and "test_curve" in h]
        if lines:
            mim = store.get_run(run["run_id"])["config"]["model"].get("mim", True)
            latest[("KGSF" if mim else "KGSF -MIM", run["seed"])] = lines
    groups: dict[str, list[list[dict]]] = defaultdict(list)
    for (label, _), lines in latest.items():
        groups[label].append(lines)
    if not groups:
        raise ConfigError(f"no finished KGSF run on {dataset} has a test curve",
                          hint="train KGSF and KGSF -MIM with --set eval.test_curve=true "
                               "(and --set run.tasks=[rec] to skip the conversation)")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    plotted: dict = {}
    for ax, metric in zip(axes, ("all/recall@10", "all/recall@50")):
        for label, runs in sorted(groups.items()):
            epochs, mean, low, high = _band([[h["test_curve"][metric] for h in lines] for lines in runs])
            ax.plot(epochs, mean, marker="o", label=f"{label} ({_seeds(len(runs))})")
            ax.fill_between(epochs, low, high, alpha=0.2)
            plotted.setdefault(label, {})[metric] = (epochs, mean, low, high)
        ax.set_xlabel("recommendation epoch")
        _integer_ticks(ax)
        ax.set_ylabel(f"test {metric.split('/')[1]}")
        ax.legend(fontsize=8)
    fig.suptitle(f"{dataset}: test scores after every epoch, for this curve only (the runs' reported "
                 "metrics are those of the epoch chosen on validation)", fontsize=8)
    save_figure(plt, fig, out)
    return plotted


def _builds_across_rows(rows: list) -> list[str]:
    """A note when the bars' runs started on more than one preprocessing build: the variants then
    differ in their word vectors too, not only in what the ablation removes."""
    by_build: dict[str, list[str]] = {}
    for row in rows:
        runs = {run for m in ABLATION_METRICS for run in row.cells[m].runs}
        for build in sorted({content_of(run) or "unknown" for run in runs}):
            by_build.setdefault(build, []).append(row.label)
    if len(by_build) < 2:
        return []
    shown = "; ".join(f"content {b[:10]}: {', '.join(labels)}" for b, labels in sorted(by_build.items()))
    return [f"the bars come from {len(by_build)} preprocessing builds of the data ({shown}): the rows differ "
            "in their word vectors as well as in the ablation (`crsbench sweep FILE --same-build` re-runs "
            "the cells of other builds)."]


def ablation(store: ResultStore, dataset: str, out: Path, data_version: str | None = None,
             notes: list[str] | None = None, builds: CurrentBuilds | None = None) -> dict:
    """Figure 3; returns {row label: {metric: (mean, std, seeds)}}, the numbers of `crsbench compare`,
    less the runs a since-fixed defect could have changed (said in `notes`, with compare's other
    notes). A row's seeds are those with conversation scores (its recommender-only runs count in the
    table's seed column, not here). `builds`: only the runs of this code's build (compare's)."""
    table = compare(store, dataset, metrics=[m.split("/")[1] for m in ABLATION_METRICS], data_version=data_version,
                    keep=lambda row: row[:2] in ABLATION_ROWS, skip_fixed=True, builds=builds)
    if notes is not None:
        notes.extend(table.notes)
    rows = [r for key in ABLATION_ROWS for r in table.rows if (r.model, r.tag) == key
            and all(m in r.cells for m in ABLATION_METRICS)]
    if not rows:
        raise ConfigError(f"no finished conversation runs of KGSF's ablations on {dataset}",
                          hint="crsbench sweep sweeps/ablations_redial.yaml (and sweeps/table3_redial.yaml for -MIM)")
    if notes is not None:
        notes.extend(_builds_across_rows(rows))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    plotted = {}
    for i, row in enumerate(rows):
        means = [row.cells[m].mean for m in ABLATION_METRICS]
        stds = [row.cells[m].std or 0.0 for m in ABLATION_METRICS]
        seeds = min(len(row.cells[m].values) for m in ABLATION_METRICS)
        ax.bar([x + i * width for x in range(len(ABLATION_METRICS))], means, width,   # one seed: no bar to draw
               yerr=stds if seeds > 1 else None, capsize=3, label=f"{row.label} ({_seeds(seeds)})")
        plotted[row.label] = {m: (row.cells[m].mean, row.cells[m].std, len(row.cells[m].values))
                              for m in ABLATION_METRICS}
    ax.set_xticks([x + width * (len(rows) - 1) / 2 for x in range(len(ABLATION_METRICS))])
    ax.set_xticklabels([m.split("/")[1] for m in ABLATION_METRICS])
    ax.legend(fontsize=8)
    ax.set_title(f"{dataset}: KGSF's conversation ablations (test split; error bars: std over seeds, "
                 "for rows with 2 or more)", fontsize=9)
    save_figure(plt, fig, out)
    return plotted


def curves(run_dirs: list[str], metric: str, out: Path, stage: str | None = None) -> dict:
    """Any per-epoch quantity of the given runs; returns {label: (epochs, values)}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    plotted = {}
    for run_dir in run_dirs:
        run = RunDir(Path(run_dir))
        meta = run.read_meta()
        points = [(h["epoch"], history_value(h, metric)) for h in read_history(run_dir)
                  if (stage is None or h["stage"] == stage)]
        points = [(e, v) for e, v in points if v is not None]
        if not points:
            raise ConfigError(f"{run_dir}: no '{metric}' per epoch in {RunDir(Path(run_dir)).history.name}",
                              hint="e.g. train_loss, gen/ppl, gen/dist@2 (eval.generation_every_epoch), "
                                   "all/recall@50 (validation), or choose --stage")
        label = f"{row_label(meta['model'], meta.get('tag'))} seed {meta.get('seed')}"
        ax.plot([e for e, _ in points], [v for _, v in points], marker="o", label=label)
        plotted[label] = ([e for e, _ in points], [v for _, v in points])
    ax.set_xlabel("epoch" + (f" of stage {stage}" if stage else ""))
    _integer_ticks(ax)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    save_figure(plt, fig, out)
    return plotted


def _train_conversations(run: dict, config: dict, known: dict[str, int]) -> int | None:
    """How many training conversations a run saw: recorded in run.json, else counted from its
    (cached) preprocessed data, once per data fingerprint."""
    meta = RunDir(Path(run["run_dir"])).read_meta() if Path(run["run_dir"], RunDir.META).exists() else {}
    count = (meta.get("data") or {}).get("train_conversations")
    if count is None and run["data_fingerprint"] not in known:
        from crsbench.datasets.loader import load_dataset
        try:
            known[run["data_fingerprint"]] = len(load_dataset(run["dataset"], config["data"]).bundle.splits["train"])
        except CrsbenchError:
            return None
    return count if count is not None else known.get(run["data_fingerprint"])


def data_curve(store: ResultStore, dataset: str, out: Path, data_version: str | None = None,
               extrapolate_to: int | None = None) -> dict:
    """Test R@10/R@50 against training conversations (log axis), with each model's log-linear trend
    (`LogTrend`) drawn dashed, out to `extrapolate_to` conversations when given. Returns
    {label: {metric: [(n, mean, std, seeds)]}}, under "trends" {label: {metric: LogTrend}}, and under
    "runs" {label: {n: [run dir]}} and "seeds" {label: {n: [seed]}}, in the same order (for the paired
    tests of `data_curve_table`)."""
    latest: dict[tuple[str, int, int], tuple[dict, str]] = {}      # (label, n, seed) -> latest (metrics, run dir)
    known: dict[str, int] = {}
    for run in _finished(store, dataset, data_version):
        config = store.get_run(run["run_id"])["config"]
        metrics = store.metrics(run["run_id"])
        count = _train_conversations(run, config, known) if "test/all/recall@50" in metrics else None
        if count is None or "test/all/recall@50" not in metrics:
            continue
        if config.get("data", {}).get("release_instances"):
            continue
        label = run["model"] + (" -MIM" if run["model"] == "kgsf" and not config["model"].get("mim", True) else "")
        if run["model"] == "kgsf" and config["stages"].get("pretrain", {}).get("epochs", 3) != 3:
            continue                                   # the pre-training study is not a data point
        latest[(label, count, run["seed"])] = (metrics, run["run_dir"])
    points: dict[str, dict[int, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    run_dirs: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for (label, count, seed), (metrics, run_dir) in latest.items():
        for metric in ("test/all/recall@10", "test/all/recall@50"):
            points[label][count][metric].append(metrics[metric])
        run_dirs[label][count].append(run_dir)
        seeds[label][count].append(seed)
    if not points:
        raise ConfigError(f"no finished recommendation runs on {dataset} record their training conversations",
                          hint="crsbench sweep sweeps/data_fraction_redial.yaml")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    plotted: dict = {"trends": {}, "runs": {label: dict(by_count) for label, by_count in run_dirs.items()},
                     "seeds": {label: dict(by_count) for label, by_count in seeds.items()}}
    for ax, metric in zip(axes, ("test/all/recall@10", "test/all/recall@50")):
        for label, by_count in sorted(points.items()):
            xs = sorted(by_count)
            means = [statistics.fmean(by_count[x][metric]) for x in xs]
            stds = [statistics.stdev(by_count[x][metric]) if len(by_count[x][metric]) > 1 else 0.0 for x in xs]
            line = ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
            plotted.setdefault(label, {})[metric] = [(x, m, s, len(by_count[x][metric]))
                                                     for x, m, s in zip(xs, means, stds)]
            if len(xs) < 2:
                continue
            trend = LogTrend.fit([x for x in xs for _ in by_count[x][metric]],
                                 [v for x in xs for v in by_count[x][metric]])
            plotted["trends"].setdefault(label, {})[metric] = trend
            end = max(xs[-1], extrapolate_to or 0)
            span = [xs[0] * (end / xs[0]) ** (i / 20) for i in range(21)]
            ax.plot(span, [trend.at(x) for x in span], "--", color=line[0].get_color(), linewidth=1)
            if extrapolate_to:
                low, high = trend.interval(extrapolate_to)
                ax.errorbar([extrapolate_to], [trend.at(extrapolate_to)],
                            yerr=None if math.isnan(low) else [[trend.at(extrapolate_to) - low], [high - trend.at(extrapolate_to)]],
                            marker="x", capsize=3, color=line[0].get_color(), linestyle="none")
        ax.set_xscale("log")
        ax.set_xlabel("training conversations (log scale)")
        ax.set_ylabel(metric.replace("test/", "test "))
        ax.legend(fontsize=8)
    fig.suptitle(f"{dataset}: recommendation against training data (error bars: std over seeds; dashed: "
                 f"fit a + b·ln n" + (f", x: its value at {extrapolate_to:,} with 95 % interval)" if extrapolate_to else ")"),
                 fontsize=9)
    save_figure(plt, fig, out)
    return plotted


def data_curve_table(plotted: dict, extrapolate_to: int | None = None) -> str:
    """`data_curve`'s numbers as Markdown: mean per training-set size, the gain per doubling, and
    (with `extrapolate_to`) the trend's value there with its 95 % interval."""
    sizes = sorted({n for label, by_metric in plotted.items() if label not in DATA_CURVE_KEYS
                    for series in by_metric.values() for n, *_ in series})
    head = ["model", "metric"] + [f"n = {n:,}" for n in sizes] + ["per doubling"]
    if extrapolate_to:
        head.append(f"trend at {extrapolate_to:,} (95 % interval)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in sorted(k for k in plotted if k not in DATA_CURVE_KEYS):
        for metric, series in plotted[label].items():
            means = {n: f"{m:.4f}" + (f" ± {s:.4f}" if k > 1 else "") for n, m, s, k in series}
            trend = plotted["trends"].get(label, {}).get(metric)
            cells = [label, metric.replace("test/", "")] + [means.get(n, "—") for n in sizes]
            cells.append("—" if trend is None else f"{trend.per_doubling:+.4f}")
            if extrapolate_to:
                if trend is None:
                    cells.append("—")
                else:
                    low, high = trend.interval(extrapolate_to)
                    cells.append(f"{trend.at(extrapolate_to):.4f}" +
                                 ("" if math.isnan(low) else f" ({low:.4f}–{high:.4f})"))
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for metric in ("test/all/recall@10", "test/all/recall@50"):
        by_label = {label: {n: m for n, m, *_ in by_metric[metric]}
                    for label, by_metric in plotted.items() if label not in DATA_CURVE_KEYS and metric in by_metric}
        tests = pair_tests(by_label, plotted.get("runs", {}), plotted.get("seeds", {}), metric)
        orders = size_orders(by_label, tests)
        if not orders:
            continue
        name = metric.replace("test/", "")
        lines.append(f"{name} order by mean (`>`: paired p < {ALPHA} against the next model, on the seeds "
                     f"both have, averaged per instance; `≈`: not): " + "; ".join(f"n = {o.size:,}: {o.render()}" for o in orders))
        flips = reversals(tests)
        untested = sum(t.p is None for t in tests)
        verdict = ("changes with data: " + "; ".join(
            f"{a.better} > {a.worse} at n = {a.size:,} (p = {a.p:.2g}) but {b.better} > {b.worse} at n = {b.size:,} "
            f"(p = {b.p:.2g})" for a, b in flips)) if flips else "does not change significantly with data"
        lines.append(f"{name}: the order {verdict}" + (f" ({untested} pair(s) untested: no stored outcomes)"
                                                      if untested else "") + ".")
    return "\n".join(lines)
