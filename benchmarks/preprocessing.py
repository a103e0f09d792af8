"""Full preprocessing of the shared ReDial data vs a cached load, in one run.

    python benchmarks/preprocessing.py [--dataset redial]

Both start from a fresh, empty cache directory; the ratio shows what the cache saves. Targets
(issue 2): full preprocessing <= 60 s and a cached load <= 3 s on the 2-core CPU machine.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time

from loguru import logger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="redial")
    args = parser.parse_args()
    from crsbench.config.loader import resolve_config
    from crsbench.datasets.loader import load_dataset
    from crsbench.registry import get_dataset

    class NoModel:
        config_file = None
    logger.remove()
    with tempfile.TemporaryDirectory() as cache_dir:
        config = resolve_config(NoModel, get_dataset(args.dataset), None, [f"data.cache_dir={cache_dir}"])
        start = time.perf_counter()
        load_dataset(args.dataset, config["data"])
        full = time.perf_counter() - start
        start = time.perf_counter()
        data = load_dataset(args.dataset, config["data"])
        cached = time.perf_counter() - start
    counts = data.instances["test"].counts()
    print(f"{args.dataset}: full preprocessing {full:.2f} s, cached load {cached:.2f} s, "
          f"ratio {full / cached:.1f}x; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"test instances {counts}")


if __name__ == "__main__":
    main()
