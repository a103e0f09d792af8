"""`crsbench compare` as it starts now (no torch) vs as it started before issue 15 (the command
imported crsbench.runner, and so torch, to open the results index), in one run.

    python benchmarks/compare_startup.py [--repeat 5] [--output-dir runs]

Each variant runs as a fresh process `--repeat` times, alternating, on the same results index; the
median wall times and their ratio are printed.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--dataset", default="redial")
    args = parser.parse_args()
    command = ["compare", "--dataset", args.dataset, "--output-dir", args.output_dir]
    now = [sys.executable, "-m", "crsbench", *command]
    before = [sys.executable, "-c", "import crsbench.runner; from crsbench.cli import main; "
              f"raise SystemExit(main({command!r}))"]
    times: dict[str, list[float]] = {"now": [], "before (imports torch)": []}
    for _ in range(args.repeat):
        for name, cmd in (("now", now), ("before (imports torch)", before)):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name:<24} median {statistics.median(values):.2f} s over {len(values)} runs")
    ratio = statistics.median(times["before (imports torch)"]) / statistics.median(times["now"])
    print(f"ratio before / now: {ratio:.2f}x")


if __name__ == "__main__":
    main()
