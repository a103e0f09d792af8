"""Reading JSON-lines and JSON files with errors that name the file and line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from crsbench.errors import DataError


def _missing(path: Path) -> DataError:
    return DataError(f"{path}: file not found", hint="check the data directory (--data-dir or $CRSBENCH_DATA)")


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-empty line; a bad line raises DataError."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise _missing(path) from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte {raw[exc.start]:#04x} at column "
                                f"{exc.start + 1})", hint="re-save the file as UTF-8, or fix or delete that line"
                                ) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})",
                                hint="fix or delete that line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}",
                                hint="each line must be one JSON object")
            yield lineno, obj


def require(obj: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """obj[key], checked to exist and be of `kind`; `where` is "file:line" for the error."""
    if key not in obj:
        raise DataError(f"{where}: missing field '{key}'", hint=f"add '{key}' or drop that record")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{where}: field '{key}' should be {names}, got {type(value).__name__}",
                        hint="fix that record")
    return value


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file; a missing file or an undecodable byte is a DataError naming the
    file (and line)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _missing(path) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {raw[exc.start]:#04x})",
                        hint="replace the file with an intact UTF-8 copy") from None


def read_json(path: str | Path) -> Any:
    """Load a whole JSON file; errors name the file and line."""
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})",
                        hint="replace the file with an intact copy") from None
