"""A sweep driver started as a background job (SIGINT ignored) still stops on SIGINT and SIGTERM."""
import signal
import subprocess
import sys

import pytest

SCRIPT = """
import os, signal, sys, time
from crsbench.interrupt import stop_on_signals
if sys.argv[1] == "install":
    stop_on_signals()
try:
    os.kill(os.getpid(), int(sys.argv[2]))
    time.sleep(2)
except KeyboardInterrupt:
    sys.exit(7)
sys.exit(0)
"""


def _run(mode: str, signum: int) -> int:
    # as `cmd &` in a shell without job control starts it: SIGINT ignored
    return subprocess.run([sys.executable, "-c", SCRIPT, mode, str(int(signum))], timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)).returncode


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_background_driver_stops_on_sigint_and_sigterm(signum):
    assert _run("install", signum) == 7


def test_without_it_a_background_job_ignores_sigint():
    """The defect it fixes: the ignored SIGINT is inherited, so nothing stops the driver."""
    assert _run("plain", signal.SIGINT) == 0
