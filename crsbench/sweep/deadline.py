"""`crsbench sweep --deadline WHEN`: for a machine lent for a fixed time (a SLURM job's limit, a spot
instance, a working session), start a cell only if its estimated time (`estimate.py`) fits before
WHEN, and stop what still runs when WHEN comes, each run writing its checkpoint, so the same command
resumes it on the next allocation instead of the machine's end killing it between checkpoints.

With `--fill` (for a machine whose disk outlives the allocation: a SLURM job, a kept VM), a worker
that would otherwise stay idle starts a cell that does not fit, and the deadline stops it with its
checkpoint: the next allocation's sweep resumes it, charged only what is left."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from crsbench.errors import ConfigError

_DURATION = re.compile(r"^\+?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_FORMS = "+2h30m, +90m, 08:30 (the next such time of day), or 2026-12-02T08:30"
# A time of day that passed less than this long ago is refused rather than read as tomorrow's: it is
# almost always a deadline that went stale (a chained sweep started after it), not a wish to run a day.
STALE_CLOCK = timedelta(hours=6)


def parse_deadline(text: str, now: datetime | None = None) -> datetime:
    """The wall-clock time a `--deadline` value names, in local time: a duration from now
    (`+2h30m`, `+90m`, `+45s`), a time of day (`08:30`: today, or tomorrow if that passed more than
    STALE_CLOCK ago; within it, an error), or an ISO date and time."""
    now = now or datetime.now()
    value = text.strip()
    match = _DURATION.match(value)
    if value.startswith("+") and match and any(match.groups()):
        hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return now + timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value):
        try:
            clock = datetime.strptime(value, "%H:%M:%S" if value.count(":") == 2 else "%H:%M").time()
        except ValueError:
            raise ConfigError(f"--deadline {text!r}: not a time of day", hint=f"use {_FORMS}") from None
        when = datetime.combine(now.date(), clock)
        if when > now:
            return when
        if now - when < STALE_CLOCK:
            ago = int((now - when).total_seconds() // 60)
            tomorrow = when + timedelta(days=1)
            raise ConfigError(f"--deadline {text!r}: {value} passed {ago // 60}h{ago % 60:02d}m ago "
                              f"(now {now:%Y-%m-%d %H:%M}); read as tomorrow's {value} it would run "
                              "almost a day (a chained sweep started after its deadline?)",
                              hint=f"give the date and time, e.g. --deadline {tomorrow:%Y-%m-%dT%H:%M} "
                                   f"for tomorrow, or a later time: {_FORMS}")
        return when + timedelta(days=1)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--deadline {text!r}: not a duration, time of day or date and time",
                          hint=f"use {_FORMS}") from None
    if when.tzinfo is not None:
        when = when.astimezone().replace(tzinfo=None)
    if when <= now:
        raise ConfigError(f"--deadline {text!r}: that time has passed (now {now:%Y-%m-%d %H:%M})",
                          hint=f"use a later time, e.g. {_FORMS}")
    return when


def fits(now: float, need: float | None, deadline: float) -> bool:
    """Whether a cell may start at `now` (epoch seconds): before the deadline, with an estimate that
    ends by it. A cell without an estimate may start; the deadline stops it if it comes first."""
    return now < deadline and (need is None or now + need <= deadline)


FILL_MIN_S = 300.0      # --fill starts nothing with less time left: loading and a checkpoint would eat it


def may_fill(now: float, deadline: float) -> bool:
    """Whether --fill may still start a cell that does not fit (enough time left to train some of it)."""
    return deadline - now >= FILL_MIN_S


def schedule(plans: list, needs: dict, workers: int, now: float, deadline: float, fill: bool = False) -> dict:
    """What the driver would do before the deadline, on its estimates: for each cell it would run,
    ("finishes", time), ("stopped", time) for a cell without an estimate (the deadline stops it),
    ("filled", time) for one that does not fit but fills an idle worker (`fill`) until the deadline
    stops it, or ("not started", reason). Cells start in the driver's order (to resume, to do, and
    each waiting cell in its place once its source finishes), `workers` at a time, each only if its
    estimate fits; with `fill`, the cells that do not fit start, in that order, on workers left idle."""
    from crsbench.sweep.driver import run_order, start_order        # the driver imports this module
    from crsbench.sweep.plan import WAIT
    from crsbench.sweep.spec import Cell
    queue, in_order = run_order(plans), start_order(plans)
    waiting = [p for p in plans if p.status == WAIT]
    verdicts: dict = {}
    running: list[tuple[float, object]] = []          # (finish time, cell)
    deferred: list = []                               # --fill: cells that do not fit, for idle workers
    t = now
    while queue or running or deferred:
        while queue and len(running) < workers:
            plan = queue.pop(0)
            need = needs.get(plan.cell)
            if not fits(t, need, deadline):
                if fill and t < deadline:
                    deferred.append(plan)
                    continue
                verdicts[plan.cell] = ("not started", "does not fit" if t < deadline else "the deadline has come")
            elif need is None:
                verdicts[plan.cell] = ("stopped", deadline)
                running.append((deadline, plan.cell))
            else:
                verdicts[plan.cell] = ("finishes", t + need)
                running.append((t + need, plan.cell))
        while deferred and not queue and len(running) < workers and may_fill(t, deadline):
            plan = deferred.pop(0)
            verdicts[plan.cell] = ("filled", deadline)
            running.append((deadline, plan.cell))
        if not running:
            break
        running.sort(key=lambda r: r[0])
        t, cell = running.pop(0)
        for plan in list(waiting):
            if Cell(plan.row.init_from, plan.cell.dataset, plan.cell.seed) == cell:
                waiting.remove(plan)
                if verdicts[cell][0] == "finishes":
                    queue.append(plan)
                    queue.sort(key=in_order)
                else:                                 # stopped at the deadline
                    verdicts[plan.cell] = ("not started", "its init_from cell does not finish")
    for plan in deferred:
        verdicts[plan.cell] = ("not started", "does not fit")
    for plan in waiting:
        verdicts[plan.cell] = ("not started", "its init_from cell does not finish")
    return verdicts
