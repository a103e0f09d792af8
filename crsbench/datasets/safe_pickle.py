"""Allow-list unpickling: data pickles may only rebuild plain containers, never import code."""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from crsbench.errors import DataError

# (module, name) pairs a data pickle may reference. Everything else is refused.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("collections", "defaultdict"),
    ("collections", "OrderedDict"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "tuple"),
    ("builtins", "int"),
    ("builtins", "float"),
    ("builtins", "str"),
    ("builtins", "bytes"),
    ("builtins", "bool"),
    ("builtins", "complex"),
})


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise DataError(
            f"{self.source}: the pickle wants to import {module}.{name}, which is not on the allow-list",
            hint="data pickles may hold only plain dicts/lists/strings/numbers; replace the file "
                 "with a clean copy (for example from the KGSF release)",
        )


def loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle `data` with the allow-list; `source` names the origin in errors."""
    try:
        return _AllowListUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError) as exc:
        raise DataError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc}); "
                        "it is truncated or corrupt",
                        hint="delete the file and put an intact copy in the data directory") from None


def load_pickle(path: str | Path) -> Any:
    """Read a data pickle through the allow-list unpickler (never plain pickle.load)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found",
                        hint="check the data directory (--data-dir or $CRSBENCH_DATA)") from None
    return loads(data, str(path))
