"""Running a sweep's cells: one ordinary run per cell, as `crsbench run` processes (local) or Ray tasks.

Each cell trains and scores exactly as `crsbench run` does, but leaves the results index alone:
the driver is the only writer of `results.sqlite` (SQLite is never written from several machines). A Ray task also returns the run's
record (`RunDir.RECORD`: run.json, config.yaml, metrics.json, history.jsonl, outcomes) and its log,
which the driver writes into its own runs root when the worker's files are not visible to it (no
shared output directory).
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Task:
    """A picklable description of one cell's run."""

    label: str
    model: str
    dataset: str
    seed: int
    overrides: list[str]
    protocol: str | None = None
    resume: str | None = None           # a run dir to continue instead of a new run
    data_dir: str | None = None
    threads: int | None = None          # torch CPU threads for this run
    device: str | None = None           # e.g. "cuda:0"; None: the config's run.device
    memory_fraction: float | None = None  # share of the GPU's memory this run may take


@dataclass
class Outcome:
    label: str
    status: str                          # "finished" or "failed"
    run_dir: str | None = None
    error: str | None = None
    seconds: float = 0.0
    files: dict[str, bytes] = field(default_factory=dict)
    run_id: str | None = None


def _ship(run_dir: Path) -> dict[str, bytes]:
    """The run's record and its log (a failed cell's log is what its report shows)."""
    from crsbench.run_dir import RunDir
    run = RunDir(run_dir)
    return {path.name: path.read_bytes() for path in run.record_files() + ([run.log] if run.log.exists() else [])}


def run_task(task: Task, ship: bool = False) -> Outcome:
    """Run one cell in this process (a pool worker or a Ray task); never raises."""
    import torch
    from loguru import logger

    from crsbench.run_dir import RunDir
    from crsbench.runner import create_run, execute_run, prepare_config
    started = time.perf_counter()
    os.environ["TQDM_DISABLE"] = "1"          # progress bars of parallel workers would interleave
    logger.remove()
    logger.add(lambda m: print(f"[{task.label}] {m}", end="", flush=True), level="WARNING")
    if task.threads:
        torch.set_num_threads(task.threads)
    if task.device and task.device.startswith("cuda") and task.memory_fraction:
        index = int(task.device.split(":")[1]) if ":" in task.device else 0
        torch.cuda.set_per_process_memory_fraction(task.memory_fraction, index)
    run = None
    try:
        overrides = list(task.overrides) + ([f"run.device={task.device}"] if task.device else [])
        if task.resume:
            run = RunDir(Path(task.resume))
        else:
            config, _ = prepare_config(task.model, task.dataset, None, overrides, task.data_dir, task.seed,
                                       task.protocol)
            run = create_run(task.model, task.dataset, config, task.protocol)
        execute_run(run, resuming=task.resume is not None, record=False)
        status, error = "finished", None
    except BaseException as exc:             # a failed cell must not stop the others
        status = "failed"
        error = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
        if not hasattr(exc, "message") and not isinstance(exc, KeyboardInterrupt):
            error += "\n" + traceback.format_exc(limit=3)
        if isinstance(exc, KeyboardInterrupt):
            status = "interrupted"
    seconds = time.perf_counter() - started
    files = _ship(run.path) if ship and run is not None else {}
    return Outcome(task.label, status, str(run.path) if run else None, error, seconds, files,
                   run.run_id() if run else None)


@dataclass(eq=False)
class _Child:
    """A cell running as a `crsbench run` process."""

    task: Task
    process: object
    run_dir: Path
    started: float
    slot: int | None


class LocalExecutor:
    """Cells as ordinary `crsbench run` processes on this machine, `workers` at a time. CPU threads
    are divided between them (OMP_NUM_THREADS); with GPUs each run gets one device
    (CUDA_VISIBLE_DEVICES) and a memory share, `runs_per_gpu` runs sharing a device. The driver
    creates each new run's directory, so it knows where every cell writes even if it fails."""

    name = "local"

    def __init__(self, workers: int = 1, runs_per_gpu: int = 1, data_dir: str | None = None,
                 threads: int | None = None) -> None:
        self.workers = max(1, workers)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        # the machine's CPUs split between this sweep's workers, unless told: another sweep or job on the
        # same machine is not counted, and two runs' OpenMP threads fighting over a core slow both
        self.threads = threads or max(1, cpus // self.workers)
        self.runs_per_gpu = max(1, runs_per_gpu)
        self.free_slots = [g for g in range(_gpu_count()) for _ in range(self.runs_per_gpu)]
        self.device_kind = "cuda" if self.free_slots else "cpu"     # whose recorded times estimate a cell
        self.data_dir = data_dir

    @property
    def capacity(self) -> int:
        return self.workers

    def submit(self, task: Task) -> _Child:
        import subprocess
        import sys

        from crsbench.run_dir import RunDir
        from crsbench.runner import create_run, prepare_config
        if task.resume:
            run = RunDir(Path(task.resume))
            args = ["--resume", str(run.path)]
        else:
            config, _ = prepare_config(task.model, task.dataset, None, task.overrides, task.data_dir, task.seed,
                                       task.protocol)
            run = create_run(task.model, task.dataset, config, task.protocol)
            args = ["--execute", str(run.path)]
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "TQDM_DISABLE": "1"}
        slot = self.free_slots.pop(0) if self.free_slots else None
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(slot)
            env["CRSBENCH_GPU_MEMORY_FRACTION"] = str(1.0 / self.runs_per_gpu)
        output = open(run.path / "output.txt", "ab")
        process = subprocess.Popen([sys.executable, "-m", "crsbench", "run", *args, "--no-index"], env=env,
                                   stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)      # a terminal's Ctrl-C reaches the driver only
        output.close()
        return _Child(task, process, run.path, time.perf_counter(), slot)

    def wait(self, children: list, timeout: float) -> list:
        deadline = time.perf_counter() + timeout
        while True:
            done = [c for c in children if c.process.poll() is not None]
            if done or time.perf_counter() >= deadline:
                return done
            time.sleep(0.2)

    def result(self, child: _Child) -> Outcome:
        from crsbench.errors import CrsbenchError
        from crsbench.run_dir import RunDir
        if child.slot is not None:
            self.free_slots.append(child.slot)
        seconds = time.perf_counter() - child.started
        if child.process.returncode == 0:
            return Outcome(child.task.label, "finished", str(child.run_dir), seconds=seconds)
        try:
            meta = RunDir(child.run_dir).read_meta()
        except CrsbenchError:
            meta = {}
        error = meta.get("error") or _last_line(child.run_dir / "output.txt") or f"exit {child.process.returncode}"
        status = "interrupted" if meta.get("status") == "interrupted" else "failed"
        return Outcome(child.task.label, status, str(child.run_dir), error, seconds)

    def stop(self, children: list, timeout: float = 120.0) -> list[Outcome]:
        """SIGTERM every running cell: each writes a checkpoint, marks itself interrupted and exits."""
        import signal
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.process.wait(timeout=timeout)
            except Exception:
                child.process.kill()
                child.process.wait()
        return [self.result(c) for c in children]

    def close(self) -> None:
        pass


def _last_line(path: Path) -> str | None:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][-300:] if lines else None


class RayExecutor:
    """The same cells as Ray tasks, on an existing cluster (`address`) or a local Ray instance.
    Each task asks for `cpus` CPUs and `gpu_share` of a GPU (1 / runs_per_gpu when GPUs exist)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, runs_per_gpu: int = 1,
                 cpus_per_task: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            from crsbench.errors import ConfigError
            raise ConfigError("--executor ray needs Ray, which is not installed",
                              hint="pip install 'crsbench[ray]' (or pip install ray)") from None
        self.ray = ray
        if not ray.is_initialized():
            options = {"address": address} if address else {"num_cpus": workers or None}
            ray.init(include_dashboard=False, log_to_driver=True, configure_logging=False, **options)
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 1))
        self.cpus_per_task = cpus_per_task or max(1, cpus // (workers or cpus))
        self.gpu_share = 1.0 / max(1, runs_per_gpu) if resources.get("GPU", 0) >= 1 else 0
        self.workers = workers or max(1, cpus // self.cpus_per_task)
        self.remote = ray.remote(run_task)

    @property
    def capacity(self) -> int:
        return self.workers

    @property
    def threads(self) -> int:
        return self.cpus_per_task

    def submit(self, task: Task):
        task.threads = self.cpus_per_task
        if self.gpu_share:
            task.memory_fraction = self.gpu_share
        return self.remote.options(num_cpus=self.cpus_per_task, num_gpus=self.gpu_share).remote(task, True)

    def wait(self, futures: list, timeout: float) -> list:
        done, _ = self.ray.wait(futures, num_returns=1, timeout=timeout)
        return done

    def result(self, future) -> Outcome:
        try:
            return self.ray.get(future)
        except BaseException as exc:
            return Outcome("?", "failed", error=f"Ray task failed: {type(exc).__name__}: {exc}")

    def stop(self, futures: list, timeout: float = 120.0) -> list[Outcome]:
        """Cancel the running tasks (Ray sends the worker a KeyboardInterrupt; the run is marked
        interrupted) and collect what they report."""
        for future in futures:
            self.ray.cancel(future)
        done, _ = self.ray.wait(futures, num_returns=len(futures), timeout=timeout)
        return [self.result(f) for f in done]

    def close(self) -> None:
        pass


def local_device_kind() -> str:
    """The kind of device a local sweep's runs would use here: `cuda` or `cpu`."""
    return "cuda" if _gpu_count() else "cpu"


def _gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0
