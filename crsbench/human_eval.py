"""Human evaluation of generated responses (KGSF paper, Table 4: Fluency and Informativeness).

`export_sheet` writes a blind annotation sheet (systems anonymised and shuffled per dialogue) plus a
key file; `import_scores` reads the annotators' filled copies back, de-anonymises them with the key,
and reports per-system means and Fleiss' kappa between annotators; `format_report` prints a table.
"""
from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

from loguru import logger

from crsbench.atomic import atomic_write, atomic_write_json
from crsbench.datasets.jsonl import read_jsonl
from crsbench.errors import ConfigError, DataError
from crsbench.run_dir import RunDir

COLUMNS = ["item_id", "dialogue", "context", "response", "fluency", "informativeness"]
ASPECTS = ("fluency", "informativeness")
_CONV_KEYS = ("sample_id", "context", "generated")


def key_path(out_csv: Path) -> Path:
    """The de-anonymisation key written beside a sheet: `<stem>.key.json`."""
    return Path(out_csv).with_name(Path(out_csv).stem + ".key.json")


def _run_info(run_dir: Path) -> tuple[str, str]:
    """(system label, dataset) of a run: the model name, plus `_<tag>` when run.tag is non-empty."""
    run = RunDir(Path(run_dir))
    if not run.meta_file.exists():
        raise ConfigError(f"{run_dir}: not a run directory (no {RunDir.META})",
                          hint="pass directories printed by `crsbench run`, e.g. runs/redial/kgsf/...")
    meta = run.read_meta()
    cfg = run.read_config() if run.config_file.exists() else None
    tag = str(((cfg or {}).get("run") or {}).get("tag") or "")
    return (meta["model"] + (f"_{tag}" if tag else "")), str(meta.get("dataset", ""))


def _read_conv(run_dir: Path, split: str) -> dict[int, dict]:
    """The run's "conv" prediction records keyed by sample_id ("rec" lines are skipped)."""
    path = RunDir(Path(run_dir)).predictions(split)
    if not path.exists():
        raise DataError(f"{path}: predictions file not found",
                        hint=f"dump the predictions first: crsbench evaluate --run {run_dir} --dump")
    records: dict[int, dict] = {}
    for line_no, record in read_jsonl(path):
        if record.get("task") != "conv":
            continue
        missing = [k for k in _CONV_KEYS if k not in record]
        if missing:
            raise DataError(f"{path}, line {line_no}: conv record lacks key(s) {', '.join(missing)}",
                            hint="re-create the file with `crsbench evaluate --run DIR --dump`")
        if record["sample_id"] in records:
            raise DataError(f"{path}, line {line_no}: sample_id {record['sample_id']} appears twice",
                            hint="re-create the file with `crsbench evaluate --run DIR --dump`")
        records[record["sample_id"]] = record
    if not records:
        raise DataError(f"{path}: no conv predictions (does this model generate responses?)",
                        hint="human evaluation needs runs of models with a conversation task")
    return records


def export_sheet(run_dirs: list[Path], out_csv: Path, n: int, seed: int, split: str = "test") -> dict:
    """Write a blind annotation sheet of `n` sampled dialogues x every run, and its key file.

    Systems are shuffled and given codes S1..Sk anew for each dialogue, so neither the row order nor
    the code tells an annotator which system wrote a response. Same inputs and seed: same bytes.
    """
    if n < 1:
        raise ConfigError(f"n: {n!r} is not a positive integer", hint="ask for at least one dialogue")
    runs: dict[str, dict[int, dict]] = {}
    datasets: dict[str, str] = {}
    for run_dir in map(Path, run_dirs):
        label, dataset = _run_info(run_dir)
        if label in runs:
            raise ConfigError(f"{run_dir}: system label '{label}' is already used by another run",
                              hint="give the runs different run.tag values, or pass only one of them")
        datasets[label] = dataset
        runs[label] = _read_conv(run_dir, split)
    if len(runs) < 1:
        raise ConfigError("no run directories given", hint="pass one or more --run DIR")
    if len(set(datasets.values())) > 1:
        raise ConfigError(f"the runs use different datasets: {datasets}",
                          hint="compare runs of one dataset; sample_ids only match within a dataset")
    labels = sorted(runs)
    eligible = sorted(set.intersection(*(set(r) for r in runs.values())))
    if len(eligible) < n:
        raise DataError(f"only {len(eligible)} sample_id(s) of split '{split}' are in every run, {n} asked",
                        hint=f"ask for at most n={len(eligible)}, or use runs evaluated on the same split")
    rng = random.Random(seed)
    sampled = rng.sample(eligible, n)
    rows: list[list[Any]] = []
    items: dict[str, str] = {}
    first = runs[labels[0]]
    for dialogue, sample_id in enumerate(sampled, 1):
        if any(runs[lab][sample_id]["context"] != first[sample_id]["context"] for lab in labels):
            logger.warning(f"sample_id {sample_id}: the runs disagree on the context; using {labels[0]}'s")
        order = list(labels)
        rng.shuffle(order)
        context = " \n ".join(first[sample_id]["context"])
        for code, label in enumerate(order, 1):
            item_id = f"d{dialogue:03d}-S{code}"
            items[item_id] = label
            rows.append([item_id, dialogue, context, runs[label][sample_id]["generated"], "", ""])
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    atomic_write(out_csv, lambda handle: handle.write(data), mode="wb")   # bytes: no newline translation
    atomic_write_json(key_path(out_csv), {
        "items": items, "seed": seed, "n": n, "split": split, "systems": labels,
        "runs": [str(p) for p in run_dirs], "dialogues": {str(d): s for d, s in enumerate(sampled, 1)}})
    logger.info(f"annotation sheet {out_csv}: {n} dialogues x {len(labels)} systems; key {key_path(out_csv)}")
    return {"dialogues": n, "systems": labels, "rows": len(rows), "sheet": str(out_csv),
            "key": str(key_path(out_csv))}


def _score(text: str, where: str, column: str, scale: tuple[int, int]) -> int:
    """One score cell as an int inside `scale` (a spreadsheet's "2.0" counts as 2)."""
    text = text.strip()
    hint = f"enter a whole number from {scale[0]} to {scale[1]} in every {column} cell"
    if not text:
        raise DataError(f"{where}: {column} is empty", hint=hint)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer() or not scale[0] <= value <= scale[1]:
        raise DataError(f"{where}: {column} = {text!r} is not an integer in {scale[0]}..{scale[1]}", hint=hint)
    return int(value)


def _read_sheet(path: Path, known: dict[str, str], scale: tuple[int, int]) -> dict[str, dict[str, int]]:
    """One annotator's filled sheet: item_id -> {aspect: score}, every cell validated."""
    if not path.exists():
        raise DataError(f"{path}: sheet not found", hint="pass the annotators' filled copies of the sheet")
    scores: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:   # -sig: spreadsheets may add a BOM
        reader = csv.reader(handle)
        header = next(reader, [])
        index = {name.strip(): i for i, name in enumerate(header)}
        for column in ("item_id", *ASPECTS):
            if column not in index:
                raise DataError(f"{path}, line 1: missing column '{column}' (header: {', '.join(header)})",
                                hint="keep the header row of the exported sheet unchanged")
        end = reader.line_num
        for row in reader:
            where, end = f"{path}, line {end + 1}", reader.line_num   # a record may span lines
            if not any(cell.strip() for cell in row):
                continue
            row = row + [""] * (len(header) - len(row))
            item_id = row[index["item_id"]].strip()
            if item_id not in known:
                raise DataError(f"{where}: unknown item_id {item_id!r} (not in the key file)",
                                hint="score the sheet exported with this key; do not edit item_id")
            if item_id in scores:
                raise DataError(f"{where}: item_id {item_id!r} appears twice", hint="delete the duplicate row")
            scores[item_id] = {a: _score(row[index[a]], where, a, scale) for a in ASPECTS}
    missing = len(known) - len(scores)
    if missing:
        logger.warning(f"{path}: {missing} of {len(known)} items are not scored")
    return scores


def fleiss_kappa(counts: list[list[int]]) -> float:
    """Fleiss' kappa of an items x categories matrix of rating counts (every item rated by n >= 2 raters).

    Degenerate case: when expected agreement P_e is 1 (every rating in one category) the formula is
    0/0; we return 1.0 if observed agreement is also perfect, else 0.0.
    """
    if not counts:
        raise ValueError("fleiss_kappa: no items")
    raters = sum(counts[0])
    if raters < 2 or any(sum(row) != raters for row in counts):
        raise ValueError("fleiss_kappa: every item needs the same number (>= 2) of ratings")
    total = len(counts) * raters
    p_cat = [sum(row[j] for row in counts) / total for j in range(len(counts[0]))]
    p_items = [(sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in counts]
    p_bar = sum(p_items) / len(p_items)
    p_e = sum(p * p for p in p_cat)
    if 1.0 - p_e < 1e-12:
        return 1.0 if p_bar > 1.0 - 1e-12 else 0.0
    return (p_bar - p_e) / (1.0 - p_e)


def import_scores(sheets: list[Path], key_file: Path, scale: tuple[int, int] = (0, 2)) -> dict:
    """Per-system mean Fluency/Informativeness over all annotators and items, plus Fleiss' kappa."""
    lo, hi = scale
    if not (isinstance(lo, int) and isinstance(hi, int) and lo < hi):
        raise ConfigError(f"scale: {scale!r} is not (min, max) integers with min < max", hint="e.g. (0, 2)")
    if not sheets:
        raise ConfigError("no sheets given", hint="pass one filled sheet per annotator")
    if len({Path(s).resolve() for s in sheets}) != len(sheets):
        raise ConfigError("the same sheet is passed twice", hint="pass each annotator's sheet once")
    key_file = Path(key_file)
    if not key_file.exists():
        raise DataError(f"{key_file}: key file not found",
                        hint="use the <sheet>.key.json written by export_sheet beside the sheet")
    try:
        known: dict[str, str] = json.loads(key_file.read_text(encoding="utf-8"))["items"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f"{key_file}: not a key file (no 'items' mapping)",
                        hint="use the <sheet>.key.json written by export_sheet") from None
    per_sheet = [_read_sheet(Path(s), known, (lo, hi)) for s in sheets]
    systems: dict[str, dict[str, Any]] = {}
    for scores in per_sheet:
        for item_id, cells in scores.items():
            entry = systems.setdefault(known[item_id], {"fluency": 0.0, "informativeness": 0.0, "ratings": 0})
            entry["ratings"] += 1
            for aspect in ASPECTS:
                entry[aspect] += cells[aspect]
    for entry in systems.values():
        for aspect in ASPECTS:
            entry[aspect] /= entry["ratings"]
    agreement: dict[str, float | None] = {a: None for a in ASPECTS}
    common = sorted(set.intersection(*(set(s) for s in per_sheet)))
    if len(per_sheet) < 2:
        logger.warning("one annotator only: agreement (Fleiss' kappa) needs at least two sheets")
    elif not common:
        logger.warning("no item is scored by every annotator: agreement is not computed")
    else:
        for aspect in ASPECTS:
            counts = [[0] * (hi - lo + 1) for _ in common]
            for row, item_id in zip(counts, common):
                for scores in per_sheet:
                    row[scores[item_id][aspect] - lo] += 1
            agreement[aspect] = fleiss_kappa(counts)
    return {"systems": dict(sorted(systems.items())), "agreement": agreement, "annotators": len(per_sheet)}


def format_report(result: dict) -> str:
    """A markdown table (system | Fluency | Informativeness | ratings) and the agreement lines."""
    lines = ["| system | Fluency | Informativeness | ratings |", "|---|---:|---:|---:|"]
    for label, entry in result["systems"].items():
        lines.append(f"| {label} | {entry['fluency']:.3f} | {entry['informativeness']:.3f} | {entry['ratings']} |")
    lines.append("")
    for aspect in ASPECTS:
        kappa = result["agreement"].get(aspect)
        shown = "n/a (needs >= 2 annotators)" if kappa is None else f"{kappa:.3f}"
        lines.append(f"Fleiss' kappa ({aspect}, {result['annotators']} annotators): {shown}")
    return "\n".join(lines) + "\n"
