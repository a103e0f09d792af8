"""Paired tests between two finished runs on the same split, whatever their rows: e.g. one model's cell
trained twice with one thing changed (word vectors, bfloat16), which `compare` would merge or keep apart
by row, not pair.

    python benchmarks/paired_runs.py RUN_A RUN_B [--split test] [--metrics all/recall@50 gen/dist@2 ...] [--resamples 10000]

Prints each metric of both runs and the two-sided p of the paired test crsbench's tables use
(`crsbench.results.row_tests.compare_cell`: per-instance permutation for recall, approximate
randomisation of the corpus statistic for Dist-n, Item Ratio, BLEU and perplexity).
"""
from __future__ import annotations

import argparse
from pathlib import Path

REC = ["all/recall@1", "all/recall@10", "all/recall@50", "cold_start/recall@50"]
GEN = ["gen/dist@2", "gen/dist@3", "gen/dist@4", "gen/item_ratio", "gen/item_share", "gen/bleu@2", "gen/ppl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--split", default="test")
    parser.add_argument("--metrics", nargs="+",
                        help="default: those of R@1/10/50 (all), cold-start R@50 and the generation metrics "
                             "that both runs have")
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from crsbench.results.compare import Cell
    from crsbench.results.row_tests import compare_cell
    from crsbench.run_dir import RunDir
    scores = [RunDir(Path(r)).read_metrics().get("metrics") for r in (args.run_a, args.run_b)]
    for run, found in zip((args.run_a, args.run_b), scores):
        if not found:
            raise SystemExit(f"{run}: no scores (no {RunDir.METRICS}); "
                             "pass a finished run's directory, e.g. runs/redial/kgsf/<run>")
    builds = [(RunDir(Path(r)).read_meta().get("data") or {}).get("content") for r in (args.run_a, args.run_b)]
    if all(builds) and builds[0] != builds[1]:
        print(f"note: the runs started on two preprocessing builds of the data (content {builds[0][:10]} and "
              f"{builds[1][:10]}): for models that read the word vectors, the difference mixes the builds' "
              "vectors with what the runs were meant to differ in\n")
    columns = args.metrics or [c for c in REC + GEN
                                if all(f"{args.split}/{c}" in s for s in scores)] or REC + GEN
    print(f"| metric | {args.run_a} | {args.run_b} | p (paired) |\n|---|---|---|---|")
    for column in columns:
        key = f"{args.split}/{column}"
        if key not in scores[0] or key not in scores[1]:
            print(f"| {column} | {scores[0].get(key, '–')} | {scores[1].get(key, '–')} | not in both runs |")
            continue
        a, b = Cell([scores[0][key]], [args.run_a]), Cell([scores[1][key]], [args.run_b])
        compare_cell(column, a, b, args.split, args.resamples, args.seed)
        print(f"| {column} | {a.values[0]:.4f} | {b.values[0]:.4f} | {a.p_paired:.2g} |")


if __name__ == "__main__":
    main()
