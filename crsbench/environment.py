"""What a run's numbers depend on beyond its code, data, config and seed: the software and hardware.

Two runs of the same cell agree to the last digit only on the same torch build, device and number
of intra-op threads (a matrix product split over two threads sums in another order than on one).
`run.json` records this at the start of a run and at every resume, so a result that does not
reproduce can be traced to a changed environment rather than guessed at.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch


def _cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """The run's environment: python, torch, the device's name, torch's intra-op threads, and whether
    the deterministic kernels are on (`run.deterministic`)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model()
    return {"python": platform.python_version(), "torch": torch.__version__, "device": device.type,
            "device_name": name, "threads": torch.get_num_threads(),
            "deterministic_kernels": torch.are_deterministic_algorithms_enabled()}


def changed(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys whose value differs between a recorded environment and the current one: (was, now).
    A key the run did not record (it predates the key) is unknown, not changed."""
    return {key: (recorded.get(key), current.get(key)) for key in sorted(set(recorded) | set(current))
            if key in recorded and recorded.get(key) != current.get(key)}
