"""SIGINT/SIGTERM during a run: training checkpoints at the next step and stops, nothing is lost.

While the trainer is inside a training step loop, the first signal only sets a flag: the trainer
writes a checkpoint after the current step and raises RunInterrupted. Outside training (loading,
evaluation), or on a second signal, RunInterrupted is raised at once. The runner marks the run
`interrupted`; `crsbench run --resume RUN_DIR` continues it.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from loguru import logger


class RunInterrupted(Exception):
    """The run was stopped by a signal; its last checkpoint is on disk."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The flag the signal handler sets and the trainer polls after every step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.training = False          # the trainer is in its step loop: it will stop by itself

    def check(self) -> None:
        """Raise RunInterrupted if a stop was requested (called where a checkpoint was just written)."""
        if self.signum is not None:
            raise RunInterrupted(self.signum)

    def _handle(self, signum: int, _frame) -> None:
        if self.training and self.signum is None:
            self.signum = signum
            logger.warning(f"{signal.Signals(signum).name} received: checkpointing after this step, then "
                           "stopping (send it again to stop at once)")
            return
        raise RunInterrupted(signum)

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        """Handle SIGINT and SIGTERM for the duration (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def stop_on_signals() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, for a driver that stops its workers on it.

    A shell without job control (a script's `cmd &`, nohup) starts a background job with SIGINT
    ignored, and Python then never raises KeyboardInterrupt: `kill -INT` would do nothing.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
