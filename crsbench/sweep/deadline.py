"""`crsbench sweep --deadline WHEN`: for a machine lent for a fixed time (a SLURM job's limit, a spot
instance, a working session), start a cell only if its estimated time (`estimate.py`) fits before
WHEN, and stop what still runs when WHEN comes, each run writing its checkpoint, so the same command
resumes it on the next allocation instead of the machine's end killing it between checkpoints."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from crsbench.errors import ConfigError

_DURATION = re.compile(r"^\+?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_FORMS = "+2h30m, +90m, 08:30 (the next such time of day), or 2026-12-02T08:30"


def parse_deadline(text: str, now: datetime | None = None) -> datetime:
    """The wall-clock time a `--deadline` value names, in local time: a duration from now
    (`+2h30m`, `+90m`, `+45s`), a time of day (`08:30`: today, or tomorrow if that has passed),
    or an ISO date and time."""
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
        return when if when > now else when + timedelta(days=1)
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
