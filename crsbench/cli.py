"""crsbench: a benchmark framework for conversational recommender systems. Train and score a model,
compare results with significance tests, run whole tables as sweeps, talk to a trained model."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Sequence

from loguru import logger

from crsbench.errors import ConfigError, CrsbenchError
from crsbench.interrupt import RunInterrupted


def _cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        from crsbench.config.loader import describe
        from crsbench.runner import prepare_config
        if args.resume:
            raise ConfigError("--dry-run describes a new run; a resumed run keeps its saved config.yaml",
                              hint="read RUN_DIR/config.yaml")
        config, sources = prepare_config(args.model, args.dataset, args.config, args.set, args.data_dir, args.seed,
                                         args.protocol)
        print(describe(config, sources))
        return 0
    from crsbench.runner import execute_run, run_experiment
    if args.execute or (args.resume and args.no_index):        # a sweep's cell: the driver indexes it
        from crsbench.run_dir import RunDir
        result = execute_run(RunDir(Path(args.execute or args.resume)), resuming=bool(args.resume),
                             record=not args.no_index)
    else:
        result = run_experiment(args.model, args.dataset, config_file=args.config, overrides=args.set,
                                data_dir=args.data_dir, seed=args.seed, resume=args.resume, protocol=args.protocol)
    print(f"run finished: {result.run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from crsbench.runner import evaluate_run
    result = evaluate_run(args.run, dump=args.dump, data_dir=args.data_dir, output_dir=args.output_dir)
    print(f"evaluated: {result.run_dir}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from crsbench.atomic import atomic_write_text
    from crsbench.datasets.loader import current_data_version
    from crsbench.registry import get_dataset
    from crsbench.results.compare import compare
    from crsbench.results.store import results_db
    get_dataset(args.dataset)                       # an unknown dataset is an error, not an empty table
    version = None if args.all_data else current_data_version(args.dataset, args.data_dir)
    builds = None
    if args.same_build:
        from crsbench.datasets.loader import CurrentBuilds
        builds = CurrentBuilds(args.data_dir)
    table = compare(results_db(args.output_dir), args.dataset, split=args.split,
                    metrics=args.metrics.split(",") if args.metrics else None, data_version=version,
                    seeds=set(args.seeds) if args.seeds else None, builds=builds)
    if args.baseline or args.ci:
        from crsbench.results import row_tests
        if args.baseline:
            row_tests.add_significance(table, args.baseline, args.resamples, args.test_seed)
        if args.ci:
            row_tests.add_confidence_intervals(table, args.resamples, args.test_seed)
    markdown = table.to_markdown()
    print(markdown)
    for path, text in ((args.csv, table.to_csv()), (args.markdown, markdown + "\n")):
        if path:
            atomic_write_text(path, text)
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from crsbench.sweep.spec import load_sweep, narrow
    sweep = whole = load_sweep(args.file)
    if args.rows or args.seeds:
        sweep = narrow(sweep, args.rows, args.seeds)
    deadline = None
    if args.fill and not args.deadline:
        raise ConfigError("--fill needs --deadline: it fills the time left before the deadline",
                          hint="add --deadline WHEN, e.g. --deadline +2h30m")
    if args.deadline:
        from crsbench.sweep.deadline import parse_deadline
        deadline = parse_deadline(args.deadline)
    if args.dry_run:
        from crsbench.sweep.driver import describe_plan
        from crsbench.sweep.executors import local_device_kind
        from crsbench.sweep.plan import Planner
        known = Planner(whole, args.data_dir, args.same_build).plan_all() if whole is not sweep else None
        device = local_device_kind() if args.executor == "local" else None
        print(describe_plan(Planner(sweep, args.data_dir, args.same_build).plan_all(), args.workers or 1, known,
                            deadline, device, args.fill))
        return 0
    if args.table:
        return _print_sweep_tables(sweep, args)
    from crsbench.interrupt import stop_on_signals
    from crsbench.sweep.driver import run_sweep, sweep_table
    stop_on_signals()              # Ctrl-C, kill -INT (even of a background sweep) and SIGTERM stop the workers cleanly
    if args.executor == "ray":
        from crsbench.sweep.executors import RayExecutor
        executor = RayExecutor(args.ray_address, args.workers, args.runs_per_gpu, args.threads)
    else:
        from crsbench.sweep.executors import LocalExecutor
        executor = LocalExecutor(args.workers or 1, args.runs_per_gpu, args.data_dir, args.threads)
    report = run_sweep(sweep, executor, args.data_dir, args.same_build, deadline,
                       whole if whole is not sweep else None, args.fill)
    print(sweep_table(sweep, args.data_dir, same_build=args.same_build))
    for cell, error in report.failed + report.skipped:
        print(f"not done: {cell.label}: {error.splitlines()[0]}", file=sys.stderr)
    return 1 if report.failed or report.skipped else 0


def _print_sweep_tables(sweep, args: argparse.Namespace) -> int:
    """`sweep --table`: the comparison of the sweep's rows from the results store; runs nothing."""
    from pathlib import Path

    from crsbench.atomic import atomic_write_text
    from crsbench.sweep.driver import sweep_tables
    tables = sweep_tables(sweep, args.data_dir, args.baseline, args.resamples, args.test_seed, args.same_build)
    for dataset, table in tables.items():
        print(f"### {dataset}\n\n{table.to_markdown()}\n")
        if args.csv:
            path = Path(args.csv)
            if len(tables) > 1:
                path = path.with_name(f"{path.stem}-{dataset}{path.suffix}")
            atomic_write_text(path, table.to_csv())
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from crsbench.results import plots
    from crsbench.results.store import results_db
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"--out {args.out}: the file type is not one of .png, .svg, .pdf", hint="e.g. --out fig.png")
    if args.extrapolate_to is not None and (args.figure != "data-curve" or args.extrapolate_to < 1):
        raise ConfigError(f"--extrapolate-to {args.extrapolate_to}: only for data-curve, as a number of training "
                          f"conversations (1 or more)", hint="e.g. plot data-curve --extrapolate-to 9105")
    if args.figure == "curves":
        if not args.runs or not args.metric:
            raise ConfigError("plot curves needs --runs and --metric", hint="e.g. --runs RUN_DIR --metric gen/dist@2")
        plots.curves(args.runs, args.metric, out, args.stage)
    else:
        if not args.dataset:
            raise ConfigError(f"plot {args.figure} needs --dataset", hint="e.g. --dataset redial")
        from crsbench.datasets.loader import current_data_version
        from crsbench.registry import get_dataset
        get_dataset(args.dataset)
        version = None if args.all_data else current_data_version(args.dataset, args.data_dir)
        if args.figure == "data-curve":
            plotted = plots.data_curve(results_db(args.output_dir), args.dataset, out, version, args.extrapolate_to)
            print(plots.data_curve_table(plotted, args.extrapolate_to))
        elif args.figure == "ablation":
            notes: list[str] = []
            builds = None
            if args.same_build:
                from crsbench.datasets.loader import CurrentBuilds
                builds = CurrentBuilds(args.data_dir)
            plots.ablation(results_db(args.output_dir), args.dataset, out, version, notes=notes, builds=builds)
            for note in notes:
                print(f"note: {note}")
        else:
            plots.mim_curve(results_db(args.output_dir), args.dataset, out, version)
    print(f"wrote {out}")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from crsbench.results.history import history_table
    for i, run_dir in enumerate(args.runs):
        print(("\n" if i else "") + f"{run_dir}:\n\n" + history_table(run_dir, args.stage, args.columns))
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    if args.archive:
        from crsbench.results.archive import archive_runs
        window = {}
        for flag in ("since", "until"):
            value = getattr(args, flag)
            try:
                window[flag] = datetime.fromisoformat(value) if value else None
            except ValueError:
                raise ConfigError(f"--{flag} {value}: not a date or time",
                                  hint=f"e.g. --{flag} 2026-12-01T11:52 (UTC unless it names its zone)") from None
        done = archive_runs(args.output_dir, args.archive, args.dataset, **window)
        print(f"wrote {args.archive}: {done['runs']} finished run(s), {done['files']} record files, "
              f"{done['bytes'] / 1024:.0f} KiB (no weights)")
        return 0
    if args.unarchive:
        from crsbench.results.archive import unarchive_runs
        for archive in args.unarchive:                    # each one whole before the next
            done = unarchive_runs(archive, args.output_dir)
            print(f"{archive}: added {done['added']} run(s) to {args.output_dir} ({done['kept']} already there, "
                  f"kept); results.sqlite now indexes {done['indexed']}")
        return 0
    if args.prune_checkpoints:
        from crsbench.results.prune import prune_checkpoints
        done = prune_checkpoints(args.output_dir, args.dataset, args.dry_run)
        for run in done["runs"]:
            print(f"  {run}/checkpoints")
        print(f"{'would free' if args.dry_run else 'freed'} {done['bytes'] / 2**30:.2f} GiB: the checkpoints of "
              f"{len(done['runs'])} finished run(s) under {args.output_dir}")
        return 0
    if args.dry_run:
        raise ConfigError("--dry-run goes with --prune-checkpoints", hint="crsbench runs --prune-checkpoints --dry-run")
    if args.reindex:
        from crsbench.results.store import reindex
        count, skipped = reindex(args.output_dir)
        print(f"rebuilt {Path(args.output_dir) / 'results.sqlite'} from {count} finished run(s)")
        for entry in skipped:
            print(f"  skipped {entry}", file=sys.stderr)
        return 0
    from crsbench.results.listing import format_runs, list_runs
    rows = list_runs(args.output_dir, args.dataset)
    if not rows:
        print(f"no run directories under {args.output_dir}" + (f"/{args.dataset}" if args.dataset else ""))
        return 0
    print(format_runs(rows))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from crsbench.results.show import describe_run
    for i, run_dir in enumerate(args.runs):
        print(("\n" if i else "") + describe_run(run_dir))
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from crsbench.chat import load_session, run_chat
    if args.top_k < 1:
        raise ConfigError(f"--top-k {args.top_k}: must be at least 1", hint="e.g. --top-k 5")
    if args.beam is not None and args.beam < 1:
        raise ConfigError(f"--beam {args.beam}: must be at least 1", hint="1 is greedy decoding")
    sys.stdout.reconfigure(errors="backslashreplace")     # a title the terminal's encoding lacks
    return run_chat(load_session(args.run, args.data_dir, args.top_k, args.beam))


def _cmd_explain(args: argparse.Namespace) -> int:
    from crsbench.explain import conversation_samples, explain_sample, format_turn, plot_turns
    from crsbench.runner import load_run
    if args.top_k < 1:
        raise ConfigError(f"--top-k {args.top_k}: must be at least 1", hint="e.g. --top-k 5")
    meta, _, data, model = load_run(args.run, args.data_dir)
    if args.split not in data.instances:
        raise ConfigError(f"--split {args.split}: unknown split", hint=f"choose among {', '.join(data.instances)}")
    try:
        samples = conversation_samples(data.instances[args.split].samples, args.conversation, args.turn)
        explanations = [explain_sample(model, s, args.top_k) for s in samples]
    except NotImplementedError as exc:
        raise ConfigError(f"{meta['model']}: {exc}", hint="explain runs of kgsf or kbrd") from None
    sys.stdout.reconfigure(errors="backslashreplace")
    print("\n\n".join(format_turn(e) for e in explanations))
    if args.out:
        plot_turns(explanations, Path(args.out))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


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


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line (whole sentences, not its first line)."""
    paragraph = (doc or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def _cmd_list(args: argparse.Namespace) -> int:
    from crsbench.metrics import METRICS
    from crsbench.registry import broken_plugins, get_dataset, get_model, list_datasets, list_models
    print("models:")
    for name in list_models():
        cls = get_model(name)
        print(f"  {name:<16} [{'+'.join(cls.tasks)}] {_summary(cls.__doc__)}")
    print("datasets:")
    for name in list_datasets():
        print(f"  {name:<16} {_summary(get_dataset(name).__doc__)}")
    for problem in broken_plugins():
        print(f"not loaded: {problem}")
    print("metrics:")
    for m in METRICS:
        print(f"  {m.name:<16} {m.definition}")
    return 0


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crsbench", description=__doc__.strip())
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
    run.add_argument("--protocol", help="a training protocol preset: crsbench (default) or paper (the KGSF "
                                        "release's epochs and model selection); see README")
    run.add_argument("--execute", metavar="RUN_DIR", help=argparse.SUPPRESS)     # a run dir crsbench sweep created
    run.add_argument("--no-index", action="store_true", help=argparse.SUPPRESS)  # crsbench sweep indexes it
    run.add_argument("--dry-run", action="store_true",
                     help="print the resolved configuration, with the layer each value came from, and exit")
    run.set_defaults(func=_cmd_run)

    ev = sub.add_parser("evaluate", help="score a saved run again (no training)")
    ev.add_argument("--run", required=True, help="the run directory")
    ev.add_argument("--dump", action="store_true", help="write per-instance predictions (JSONL)")
    ev.add_argument("--data-dir", help="data directory, if it moved since the run")
    ev.add_argument("--output-dir", help="runs root whose results.sqlite records it (default: the root the "
                                         "run was created under, or the folder three levels up)")
    ev.set_defaults(func=_cmd_evaluate)

    cmp_ = sub.add_parser("compare", help="one table of the stored results of a dataset (mean ± std over seeds)")
    cmp_.add_argument("--dataset", required=True, help="a registered dataset, e.g. redial")
    cmp_.add_argument("--split", default="test", help="the evaluation split scored (default: test)")
    cmp_.add_argument("--metrics", help="comma-separated metric names (default: recall@1,10,50 + generation)")
    cmp_.add_argument("--output-dir", default="runs", help="where the runs and results.sqlite are")
    cmp_.add_argument("--data-dir", help="data directory whose data version is shown (default as for run)")
    cmp_.add_argument("--all-data", action="store_true",
                      help="also show runs on other data versions (with a data-version column)")
    cmp_.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="only these seeds' runs")
    cmp_.add_argument("--same-build", action="store_true",
                      help="only runs made on the preprocessing build this code makes of their data (run.json's "
                           "data.content): conversation scores move with the word vectors a build holds")
    cmp_.add_argument("--baseline", metavar="MODEL[:TAG]",
                      help="test every row against this one: paired test over instances (*), Welch over seeds (†)")
    cmp_.add_argument("--ci", action="store_true",
                      help="95%% intervals (half-sampling the responses) for the generation metrics")
    cmp_.add_argument("--resamples", type=int, default=10_000, help="resamples of the tests (default 10000)")
    cmp_.add_argument("--test-seed", type=int, default=0, help="seed of the resampling (default 0)")
    cmp_.add_argument("--csv", help="also write the table (with p-values and intervals) as CSV to this file")
    cmp_.add_argument("--markdown", help="also write the Markdown table to this file")
    cmp_.set_defaults(func=_cmd_compare)

    swp = sub.add_parser("sweep", help="run a grid of runs (rows x seeds x datasets) from a sweep file, "
                                       "skipping finished cells, then print its table")
    swp.add_argument("file", help="a sweep YAML file, e.g. sweeps/table2_redial.yaml")
    swp.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local: worker processes on this machine (default); ray: Ray tasks")
    swp.add_argument("--workers", type=int, help="runs at once (local default 1; ray default: as the CPUs allow)")
    swp.add_argument("--threads", type=_positive_int, metavar="N",
                     help="CPU threads per run (default: this machine's CPUs divided by --workers). Set it when "
                          "another sweep or job shares the machine: a --workers 1 sweep beside another run "
                          "gives its run every CPU's thread, and the two runs' threads then slow each other")
    swp.add_argument("--runs-per-gpu", type=int, default=1, help="runs sharing one GPU (each gets 1/K of its memory)")
    swp.add_argument("--ray-address", help="an existing Ray cluster: auto or ray://HOST:PORT (default: start a "
                                           "local Ray instance)")
    swp.add_argument("--data-dir", help="data directory (default as for run)")
    swp.add_argument("--dry-run", action="store_true", help="list the cells and which are done, run nothing")
    swp.add_argument("--rows", nargs="+", metavar="ROW", help="only these rows (and the rows they start from)")
    swp.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                     help="only these seeds, in this order: cells run seed by seed (ascending by default), "
                          "so --seeds 3 1 finishes seed 3 of every row first and starts seed 1's cells on "
                          "workers seed 3 leaves idle (--table: only their runs)")
    swp.add_argument("--table", action="store_true",
                     help="print the comparison of the sweep's rows (on its data settings) from the results "
                          "store and run nothing: how a BENCHMARKS table is regenerated from its sweep file")
    swp.add_argument("--baseline", metavar="MODEL[:TAG]",
                     help="--table: test every row against this one (paired *, Welch †), as compare does")
    swp.add_argument("--resamples", type=int, default=10_000, help="--table: resamples of the tests (default 10000)")
    swp.add_argument("--test-seed", type=int, default=0, help="--table: seed of the resampling (default 0)")
    swp.add_argument("--csv", help="--table: also write each dataset's table (with p-values) as CSV "
                                   "(FILE-DATASET.csv when the sweep has several datasets)")
    swp.add_argument("--same-build", action="store_true",
                     help="a cell counts as done only if its run was made on the preprocessing build this code "
                          "makes of the data (run.json's data.content); cells finished on an older build (or "
                          "before that was recorded) run again. For after a preprocessing fix that kept the "
                          "raw files (and so the data fingerprint). With --table, only such runs are shown")
    swp.add_argument("--deadline", metavar="WHEN",
                     help="for a machine lent for a fixed time: start a cell only if its estimated time (as "
                          "--dry-run prints it) fits before WHEN, and at WHEN stop the running cells with a "
                          "checkpoint (the same command resumes them). WHEN: +2h30m, +90m, 08:30 or "
                          "2026-12-02T08:30 (local time); a time of day that passed under 6 h ago is "
                          "refused, not read as tomorrow's")
    swp.add_argument("--fill", action="store_true",
                     help="with --deadline, on a machine whose runs/ is kept for the next allocation (a SLURM "
                          "job's shared disk, a kept VM): a worker that would stay idle starts a cell that does "
                          "not fit, and the deadline stops it with a checkpoint; the next sweep resumes it, "
                          "charged only what is left")
    swp.set_defaults(func=_cmd_sweep)

    plot = sub.add_parser("plot", help="the paper's figures from the stored results: mim-curve (Figure 2), "
                                       "ablation (Figure 3), curves (per-epoch metrics), data-curve")
    plot.add_argument("figure", choices=("mim-curve", "ablation", "curves", "data-curve"),
                      help="mim-curve: test R@10/50 per epoch with and without MIM (runs with eval.test_curve); "
                           "ablation: KGSF's conversation variants as bars; curves: a per-epoch metric of "
                           "--runs; data-curve: R@10/50 against training conversations")
    plot.add_argument("--dataset", help="the dataset (every figure but curves)")
    plot.add_argument("--runs", nargs="+", help="run directories (curves)")
    plot.add_argument("--metric", help="curves: train_loss, gen/ppl, gen/dist@2, all/recall@50, ...")
    plot.add_argument("--stage", help="curves: only this stage's epochs (e.g. conv)")
    plot.add_argument("--extrapolate-to", type=int, metavar="N",
                      help="data-curve: extend each model's log-linear trend to N training conversations "
                           "and print its value there (e.g. 9105, the full ReDial release)")
    plot.add_argument("--out", required=True, help="the figure file: .png, .svg or .pdf")
    plot.add_argument("--output-dir", default="runs", help="where the runs and results.sqlite are")
    plot.add_argument("--data-dir", help="data directory whose data version is plotted (default as for run)")
    plot.add_argument("--all-data", action="store_true", help="also runs on other data versions")
    plot.add_argument("--same-build", action="store_true",
                      help="ablation: only runs made on the preprocessing build this code makes (as compare)")
    plot.set_defaults(func=_cmd_plot)

    hist = sub.add_parser("history", help="a run's per-epoch record (history.jsonl) as a Markdown table")
    hist.add_argument("runs", nargs="+", help="run directories")
    hist.add_argument("--stage", help="only this stage's epochs (e.g. conv)")
    hist.add_argument("--columns", nargs="+", help="metrics to show, e.g. train_loss gen/ppl gen/dist@2 "
                                                   "valid:gen/ppl (default: those the run logged of a standard set)")
    hist.set_defaults(func=_cmd_history)

    runs = sub.add_parser("runs", help="list run directories with their status (finished, failed, interrupted, "
                                       "running, stale)")
    runs.add_argument("--dataset", help="only runs of this dataset")
    runs.add_argument("--output-dir", default="runs", help="the runs root (default: runs)")
    what = runs.add_mutually_exclusive_group()
    what.add_argument("--reindex", action="store_true",
                      help="rebuild results.sqlite from the finished runs' directories")
    what.add_argument("--archive", metavar="FILE.tar.gz",
                      help="write the finished runs' records (no weights) into one file, to keep or move")
    what.add_argument("--unarchive", metavar="FILE.tar.gz", nargs="+",
                      help="add the runs of one or more archives to --output-dir (existing runs kept) and "
                           "reindex, e.g. --unarchive docs/results/*.tar.gz")
    what.add_argument("--prune-checkpoints", action="store_true",
                      help="delete the checkpoints/ of finished runs (model.pt stays; unfinished runs keep "
                           "theirs, to resume); with --dry-run, only say what would go")
    runs.add_argument("--dry-run", action="store_true", help="--prune-checkpoints: delete nothing")
    runs.add_argument("--since", metavar="TIME",
                      help="--archive: only runs finished at or after TIME (ISO 8601, UTC unless zoned), "
                           "e.g. one session's")
    runs.add_argument("--until", metavar="TIME",
                      help="--archive: only runs finished before TIME (with --since: a part of a session, "
                           "to keep each archive under 1 MB)")
    runs.set_defaults(func=_cmd_runs)

    show = sub.add_parser("show", help="what produced a run's numbers: provenance (code, data, preprocessed content, "
                                       "environment), settings changed from the defaults, training, headline metrics")
    show.add_argument("runs", nargs="+", help="run directories")
    show.set_defaults(func=_cmd_show)

    chat = sub.add_parser("chat", help="talk to a trained model (reads stdin; works piped too)")
    chat.add_argument("--run", required=True, help="a finished run of a model with a conversation side")
    chat.add_argument("--top-k", type=int, default=5, help="recommended movies shown per turn")
    chat.add_argument("--beam", type=int, help="beam width (default: the run's eval.beam_size)")
    chat.add_argument("--data-dir", help="data directory, if it moved since the run")
    chat.set_defaults(func=_cmd_chat)

    exp = sub.add_parser("explain", help="what a trained KGSF/KBRD recommender attends to in one conversation "
                                         "(Figure 4): attention over words and entities, the gate, top items")
    exp.add_argument("--run", required=True, help="a finished run of kgsf or kbrd")
    exp.add_argument("--conversation", required=True, help="a conversation id of the split (ReDial: conversationId)")
    exp.add_argument("--turn", type=int, help="one recommender turn (its index in the conversation); default: all")
    exp.add_argument("--split", default="test")
    exp.add_argument("--top-k", type=int, default=5, help="recommended items shown")
    exp.add_argument("--out", help="also draw the attention as bars into this PNG or SVG file")
    exp.add_argument("--data-dir", help="data directory, if it moved since the run")
    exp.set_defaults(func=_cmd_explain)

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
    except RunInterrupted as exc:
        print(f"{exc}; `crsbench run --resume RUN_DIR` continues from the last checkpoint", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; `crsbench run --resume RUN_DIR` continues from the last checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
