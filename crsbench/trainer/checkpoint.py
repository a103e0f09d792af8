"""Training checkpoints: written atomically, read with torch.load(weights_only=True)."""
from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crsbench.atomic import atomic_write
from crsbench.errors import DataError


def save(obj: dict, path: Path) -> None:
    """torch.save into a temp file next to `path`, then rename over it."""
    atomic_write(path, lambda handle: torch.save(obj, handle), mode="wb")


def load(path: Path) -> dict:
    """A checkpoint or weights file written by save(); only tensors and plain containers are
    accepted. A missing, truncated or corrupt file, or one that wants to import code (refused by
    torch's weights-only loader), is a DataError naming the file."""
    path = Path(path)
    hint = (f"the file is damaged or was not written by crsbench; for a checkpoint, delete {path.name} to "
            "resume from the stage's start, or start the run again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", hint="pass a run directory that finished training") from None
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        detail = f"it wants to import {found.group(1)}" if found else str(exc).strip().splitlines()[0][:200]
        raise DataError(f"{path}: refused to load: {detail}, and weights may only hold tensors and plain "
                        "containers", hint=hint + "; never load such a file from an untrusted source") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                        "it is truncated or corrupt", hint=hint) from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a dict of tensors, found {type(state).__name__}", hint=hint)
    return state


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states, as tensors and plain lists (weights_only-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {"python": [py_version, list(py_state), py_gauss],
             "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() captured."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, np_gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
