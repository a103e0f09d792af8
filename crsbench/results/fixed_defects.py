"""Defects that changed results, fixed since runs were first recorded, and which runs they touched.

A finished run keeps its numbers after a defect in the code that produced them is fixed. A sweep
must not count such a run as done, and `crsbench show` must say so. Each entry names the commit
of its fix and decides from a run's own files (run.json, config.yaml and its `init_from` source's)
whether the run was exposed to it.

Whether a run's code had a fix is read, in this order, from run.json's `fixes` (every run started
since this module exists records the fixes its code has), from git (the fix is an ancestor of the
commit in `code_version`, in a source checkout that has both), or from its start time (before the
fix's commit time: exposed).
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Callable

from crsbench.errors import CrsbenchError
from crsbench.run_dir import RunDir


@dataclass(frozen=True)
class FixedDefect:
    """One result-changing defect: its name (recorded in run.json), its fix, and who it touched."""

    name: str
    commit: str                 # the fixing commit
    committed: str              # its commit time (ISO 8601, UTC): the fallback when git cannot tell
    summary: str
    exposed: Callable[[dict, dict], bool]   # (run.json, config) -> could the defect change this run?


def _init_from_took_other_word_vectors(meta: dict, config: dict) -> bool:
    """A conversation stage started from `run.init_from` whose word embeddings were not the ones the
    run would have started from: the source trained them, or holds another preprocessing build's."""
    run = config.get("run", {})
    source = run.get("init_from")
    if not source or "conv" not in (run.get("tasks") or ["conv"]):
        return False
    try:
        source_dir = RunDir(Path(source))
        source_meta, source_config = source_dir.read_meta(), source_dir.read_config()
    except CrsbenchError:
        return True                             # the source is gone: nothing shows it was harmless
    own_build = (meta.get("data") or {}).get("content")
    source_build = (source_meta.get("data") or {}).get("content")
    trained_them = "conv" in (source_config.get("run", {}).get("tasks") or ["conv"])
    return trained_them or own_build is None or own_build != source_build


FIXED_DEFECTS: tuple[FixedDefect, ...] = (
    FixedDefect(
        name="init_from-tied-embeddings",
        commit="4a8e7c480bcc0408e8fd659680222610d4328659",
        committed="2026-12-01T22:16:00+00:00",
        summary="run.init_from loaded the tied word embeddings from the source run under their state-dict "
                "aliases, so the conversation stage started from the source's word vectors",
        exposed=_init_from_took_other_word_vectors,
    ),
)


def fixes_in_this_code() -> list[str]:
    """The names run.json records at a run's start: every fix this code has."""
    return [d.name for d in FIXED_DEFECTS]


@lru_cache(maxsize=256)
def _git_has(fix: str, commit: str) -> bool | None:
    """Whether `commit` contains `fix`, from the source checkout crsbench runs from; None if git cannot tell."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(root), "merge-base", "--is-ancestor", fix, commit],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(done.returncode)


def code_had_fix(meta: dict, defect: FixedDefect) -> bool:
    """Whether the code that started the run had `defect`'s fix (see the module's docstring)."""
    if isinstance(meta.get("fixes"), list):
        return defect.name in meta["fixes"]
    found = re.search(r"\+g([0-9a-f]{7,40})", str(meta.get("code_version", "")))
    if found and (known := _git_has(defect.commit, found.group(1))) is not None:
        return known
    try:
        return datetime.fromisoformat(meta["started"]) >= datetime.fromisoformat(defect.committed)
    except (KeyError, TypeError, ValueError):
        return False


def defects_of(meta: dict, config: dict) -> list[FixedDefect]:
    """The fixed defects that could have changed this run's results (empty for a sound run)."""
    return [d for d in FIXED_DEFECTS if not code_had_fix(meta, d) and d.exposed(meta, config)]


def defects_of_run(run_dir: str | Path) -> list[FixedDefect]:
    """`defects_of` from a run dir's own files (empty when they cannot be read)."""
    record = RunDir(Path(run_dir))
    try:
        return defects_of(record.read_meta(), record.read_config())
    except (CrsbenchError, OSError):
        return []
