"""Command-line interface: `crsbench run | evaluate | compare | chat | human-eval | list`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from loguru import logger

from crsbench.errors import CrsbenchError


def _cmd_run(args: argparse.Namespace) -> int:
    from crsbench.runner import run_experiment
    result = run_experiment(args.model, args.dataset, config_file=args.config, overrides=args.set,
                            data_dir=args.data_dir, seed=args.seed, resume=args.resume)
    print(f"run finished: {result.run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from crsbench.runner import evaluate_run
    result = evaluate_run(args.run, dump=args.dump, data_dir=args.data_dir)
    print(f"evaluated: {result.run_dir}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from crsbench.atomic import atomic_write_text
    from crsbench.results.compare import compare
    from crsbench.runner import results_db
    table = compare(results_db(args.output_dir), args.dataset, split=args.split,
                    metrics=args.metrics.split(",") if args.metrics else None)
    markdown = table.to_markdown()
    print(markdown)
    if args.csv:
        atomic_write_text(args.csv, table.to_csv())
    if args.markdown:
        atomic_write_text(args.markdown, markdown + "\n")
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from crsbench.chat import load_session, run_chat
    return run_chat(load_session(args.run, args.data_dir, args.top_k, args.beam))


def _cmd_human_export(args: argparse.Namespace) -> int:
    from crsbench.human_eval import export_sheet
    summary = export_sheet([Path(r) for r in args.runs], Path(args.out), args.n, args.seed, args.split)
    print(f"wrote {summary['rows']} rows ({summary['dialogues']} dialogues x {len(summary['systems'])} systems) "
          f"to {summary['sheet']}; key: {summary['key']} (keep it from the annotators)")
    return 0


def _cmd_human_import(args: argparse.Namespace) -> int:
    from crsbench.human_eval import format_report, import_scores
    print(format_report(import_scores([Path(s) for s in args.sheets], Path(args.key),
                                      (args.scale_min, args.scale_max))))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from crsbench.metrics import METRICS
    from crsbench.registry import get_model, list_datasets, list_models
    print("models:")
    for name in list_models():
        cls = get_model(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"  {name:<16} [{'+'.join(cls.tasks)}] {doc}")
    print("datasets:")
    for name in list_datasets():
        print(f"  {name}")
    print("metrics:")
    for name, definition in METRICS.items():
        print(f"  {name:<16} {definition}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crsbench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train (or fit) a model on a dataset, evaluate it, record the run")
    run.add_argument("--model", help="a registered model (see `crsbench list`)")
    run.add_argument("--dataset", help="a registered dataset (see `crsbench list`)")
    run.add_argument("--config", help="a YAML file with your settings (layered over model/dataset YAML)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override one setting, e.g. --set train.lr=0.0005 (repeatable)")
    run.add_argument("--data-dir", help="data directory (default: $CRSBENCH_DATA or the user data dir)")
    run.add_argument("--seed", type=int, help="shortcut for --set run.seed=N")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint")
    run.set_defaults(func=_cmd_run)

    ev = sub.add_parser("evaluate", help="score a saved run again (no training)")
    ev.add_argument("--run", required=True, help="the run directory")
    ev.add_argument("--dump", action="store_true", help="write per-instance predictions (JSONL)")
    ev.add_argument("--data-dir", help="data directory, if it moved since the run")
    ev.set_defaults(func=_cmd_evaluate)

    cmp_ = sub.add_parser("compare", help="one table of every stored result for a dataset")
    cmp_.add_argument("--dataset", required=True)
    cmp_.add_argument("--split", default="test")
    cmp_.add_argument("--metrics", help="comma-separated metric names (default: recall@1,10,50 + generation)")
    cmp_.add_argument("--output-dir", default="runs", help="where the runs and results.sqlite are")
    cmp_.add_argument("--csv", help="also write the table as CSV to this file")
    cmp_.add_argument("--markdown", help="also write the Markdown table to this file")
    cmp_.set_defaults(func=_cmd_compare)

    chat = sub.add_parser("chat", help="talk to a trained model (reads stdin; works piped too)")
    chat.add_argument("--run", required=True, help="a finished run of a model with a conversation side")
    chat.add_argument("--top-k", type=int, default=5, help="recommended movies shown per turn")
    chat.add_argument("--beam", type=int, help="beam width (default: the run's eval.beam_size)")
    chat.add_argument("--data-dir", help="data directory, if it moved since the run")
    chat.set_defaults(func=_cmd_chat)

    human = sub.add_parser("human-eval", help="blind human evaluation sheets (KGSF Table 4)")
    hsub = human.add_subparsers(dest="action", required=True)
    hexp = hsub.add_parser("export", help="sample N dialogues with every run's response into a CSV")
    hexp.add_argument("--runs", nargs="+", required=True, help="run directories (after `evaluate --dump`)")
    hexp.add_argument("--out", required=True, help="the CSV sheet for annotators; a .key.json goes beside it")
    hexp.add_argument("-n", type=int, default=100, help="dialogues to sample")
    hexp.add_argument("--seed", type=int, default=0)
    hexp.add_argument("--split", default="test")
    hexp.set_defaults(func=_cmd_human_export)
    himp = hsub.add_parser("import", help="mean Fluency/Informativeness per system and agreement")
    himp.add_argument("--sheets", nargs="+", required=True, help="one scored copy of the sheet per annotator")
    himp.add_argument("--key", required=True, help="the .key.json written by export")
    himp.add_argument("--scale-min", type=int, default=0)
    himp.add_argument("--scale-max", type=int, default=2)
    himp.set_defaults(func=_cmd_human_import)

    lst = sub.add_parser("list", help="registered models, datasets and metrics")
    lst.set_defaults(func=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `crsbench` command; errors in input print a message and a hint, no traceback."""
    args = build_parser().parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "INFO",
               format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}")
    try:
        return args.func(args)
    except CrsbenchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; `crsbench run --resume RUN_DIR` continues from the last checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
