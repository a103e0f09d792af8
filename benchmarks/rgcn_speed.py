"""Featureless R-GCN on the shared DBpedia graph: PyG's RGCNConv(x=None) vs ours, in one process.

One training step = forward + backward + Adam step, on a loss over all node outputs. Prints the
time per step for each (median of the measured steps), the ratio, and each one's peak memory
(peak RSS of a fresh child process each, data loading included, so the two do not share
the high-water mark; on CUDA the peak allocated GPU memory).

    python benchmarks/rgcn_speed.py [--steps 3] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import resource
import statistics
import time

import torch


def _graph():
    from crsbench.config.loader import resolve_config
    from crsbench.datasets.loader import load_dataset
    from crsbench.registry import get_dataset, get_model
    config = resolve_config(get_model("kgsf"), get_dataset("redial"))
    kg = load_dataset("redial", config["data"]).bundle.entity_kg
    return kg.num_nodes, kg.num_relations, torch.from_numpy(kg.edge_index), torch.from_numpy(kg.edge_type)


def _measure(which: str, steps: int, device: str, queue) -> None:
    torch.manual_seed(0)
    num_nodes, num_relations, edge_index, edge_type = _graph()
    gc.collect()
    if which == "pyg":
        from torch_geometric.nn import RGCNConv
        layer = RGCNConv(num_nodes, 128, num_relations, num_bases=8).to(device)
        edge_index, edge_type = edge_index.to(device), edge_type.to(device)
        forward = lambda: layer(None, edge_index, edge_type)  # noqa: E731
    else:
        from crsbench.models.graph import FeaturelessRGCN
        layer = FeaturelessRGCN(num_nodes, 128, num_relations, 8, edge_index, edge_type).to(device)
        forward = layer
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
    target = torch.randn(num_nodes, 128, device=device)
    times = []
    for _ in range(steps + 1):                       # the first step warms up and is not counted
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = ((forward() - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # whole process, data included
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    queue.put({"which": which, "step_s": statistics.median(times[1:]), "peak_mb": peak_mb})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    results = {}
    for which in ("ours", "pyg"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(which, args.steps, args.device, queue))
        proc.start()
        results[which] = queue.get()
        proc.join()
    for which, r in results.items():
        print(f"{which:>5}: {r['step_s']:.3f} s per training step, peak memory {r['peak_mb']:.0f} MB")
    print(f"speed-up (pyg / ours): {results['pyg']['step_s'] / results['ours']['step_s']:.1f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
