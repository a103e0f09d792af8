"""`crsbench sweep --threads`: CPU threads per run, for sweeps that share a machine."""
import os

import pytest

from crsbench.cli import build_parser
from crsbench.sweep.executors import LocalExecutor


def test_threads_default_to_the_cpus_split_between_workers_and_can_be_set():
    cpus = len(os.sched_getaffinity(0))
    assert LocalExecutor(workers=1).threads == cpus
    assert LocalExecutor(workers=cpus * 2).threads == 1
    assert LocalExecutor(workers=1, threads=1).threads == 1


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_a_thread_count_below_one_is_refused(bad, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "f.yaml", "--threads", bad])
    assert "is not a whole number of at least 1" in capsys.readouterr().err


def test_the_option_reaches_the_parsed_arguments():
    assert build_parser().parse_args(["sweep", "f.yaml", "--threads", "3"]).threads == 3
    assert build_parser().parse_args(["sweep", "f.yaml"]).threads is None
