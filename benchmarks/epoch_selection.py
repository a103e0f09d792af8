"""How much a conversation run's reported diversity depends on which epoch its selection rule picks.

    python benchmarks/epoch_selection.py [--runs runs] [--dataset redial] [--models kgsf kbrd ...]

For every finished run whose conversation stage restored its best epoch (crsbench's protocol: early
stop on validation perplexity), reads the per-epoch record (`history.jsonl`, the fixed 1,000-sample
validation subset of `eval.generation_every_epoch`) and prints, per run, the epoch the rule restored
and the subset's Dist-2 and Item Ratio there, at the last epoch trained (one or two epochs later,
when the early stop came), and their largest value over the epochs. Then, over the runs: how often
the last epoch was more diverse than the restored one, and the median ratio. The restored epoch is
where the run's `early_stop_value` is lowest, as the trainer chose it.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

DIST, ITEMS = "gen/dist@2", "gen/item_ratio"


def conversation_epochs(run) -> list[dict]:
    """The run's conversation epochs that carry the per-epoch generation metrics."""
    from crsbench.results.history import read_history
    return [e for e in read_history(run.path) if e.get("stage") == "conv" and e.get("generation")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--dataset", default="redial")
    parser.add_argument("--models", nargs="+", help="only these models (run.json's model)")
    args = parser.parse_args()
    from crsbench.run_dir import FINISHED, find_runs, shown_status
    print("| run | seed | build | epochs | restored | Dist-2 restored → last (max) | Item Ratio restored → last (max) |")
    print("|---|---|---|---|---|---|---|")
    ratios, rises = [], []
    for run in find_runs(Path(args.runs), args.dataset):
        meta = run.read_meta()
        if shown_status(meta) != FINISHED or (args.models and meta.get("model") not in args.models):
            continue
        conv = run.read_config().get("stages", {}).get("conv", {})
        epochs = conversation_epochs(run)
        if not conv.get("restore_best", True) or len(epochs) < 2 or "early_stop_value" not in epochs[0]:
            continue
        picked = min(epochs, key=lambda e: e["early_stop_value"])
        last = epochs[-1]
        dist = [e["generation"].get(DIST, 0.0) for e in (picked, last)]
        items = [e["generation"].get(ITEMS, 0.0) for e in (picked, last)]
        top = [max(e["generation"].get(k, 0.0) for e in epochs) for k in (DIST, ITEMS)]
        build = ((meta.get("data") or {}).get("content") or "?")[:10]
        name = f"{meta.get('model')}{' ' + meta['tag'] if meta.get('tag') else ''} {run.path.name}"
        print(f"| `{name}` | {meta.get('seed')} | `{build}` | {len(epochs)} | {picked['epoch']} | "
              f"{dist[0]:.3f} → {dist[1]:.3f} ({top[0]:.3f}) | {items[0]:.3f} → {items[1]:.3f} ({top[1]:.3f}) |")
        if last is not picked:
            rises.append(dist[1] > dist[0])
            if dist[0] > 0:
                ratios.append(dist[1] / dist[0])
    if ratios:
        print(f"\nruns whose last epoch is not the restored one: {len(rises)}; last epoch more diverse (Dist-2): "
              f"{sum(rises)}; median ratio last / restored: {statistics.median(ratios):.2f} "
              f"(range {min(ratios):.2f}–{max(ratios):.2f})")


if __name__ == "__main__":
    main()
