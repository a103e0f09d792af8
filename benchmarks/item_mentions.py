"""What the movie mentions in generated responses are: Item Ratio split into its parts.

Reads the test predictions of runs dumped with `crsbench evaluate --run DIR --dump` (or run.dump_predictions)
and prints one row per run (crsbench.metrics.generation.item_mention_profile): mentions per response,
share of responses with one, distinct items, and the shares of mentions that repeat an item of the same
response, match the gold response, repeat the context, or are among the model's top-10 recommendations.

    python benchmarks/item_mentions.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from crsbench.run_dir import RunDir
from crsbench.metrics.generation import item_mention_profile

COLUMNS = ["item_ratio", "with_item", "distinct_items", "repeated", "gold", "context", "top10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories holding predictions_<split>.jsonl")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    print("| run | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for run in args.runs:
        path = RunDir(Path(run)).predictions(args.split)
        if not path.exists():
            raise SystemExit(f"{path}: missing; run `crsbench evaluate --run {run} --dump` first")
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        records = [r for r in records if r.get("task") == "conv"]        # generation records only
        if records and "gold_items" not in records[0]:
            raise SystemExit(f"{path}: dumped by an older crsbench without gold/context items; dump again")
        profile = item_mention_profile(records)
        cells = [f"{profile[c]:.0f}" if c == "distinct_items" else f"{profile[c]:.3f}" for c in COLUMNS]
        print(f"| {Path(run).parent.name}/{Path(run).name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
