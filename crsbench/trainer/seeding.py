"""Seeds, devices and deterministic kernels."""
from __future__ import annotations

import random

import numpy as np
import torch

from crsbench.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is an error with a hint."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"run.device: unknown device '{name}'", hint="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device is 'cuda' but no CUDA device is available",
                          hint="use --set run.device=auto (CPU here)")
    return device


def deterministic_kernels(device: torch.device, enabled: bool) -> bool:
    """Make a CPU run with several intra-op threads give the same bits every time (`run.deterministic`).

    With two or more threads, the backward of advanced indexing (`reps[ids]`, an `index_put_` that
    accumulates) adds its rows in whatever order the threads reach them, so two runs of one cell
    differ in the last bits after one step, and the difference grows with training.
    `torch.use_deterministic_algorithms` picks the sorted, ordered kernels instead (3 % slower a
    KGSF step here: `benchmarks/deterministic_kernels.py`, BENCHMARKS.md). With one thread the default kernels already give the
    same bits as the deterministic ones, and are faster, so they stay. CUDA runs are left as they are
    (their atomics, cuBLAS workspaces): the same cell on a GPU agrees to float tolerance, not to the bit.
    Returns whether the deterministic kernels are on; the setting is process-wide.
    """
    on = bool(enabled) and device.type == "cpu" and torch.get_num_threads() > 1
    torch.use_deterministic_algorithms(on)
    return on
