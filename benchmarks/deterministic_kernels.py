"""What `run.deterministic` costs and buys: KGSF's training steps with and without deterministic kernels.

With two or more intra-op threads on a CPU, the backward of advanced indexing (`reps[ids]`) adds its
rows in thread order, so the same step gives other bits from one call to the next;
`torch.use_deterministic_algorithms` (what `run.deterministic` turns on, `crsbench/trainer/seeding.py`)
orders them. For KGSF's recommendation step (batch 128) and conversation step (batch 32) on the first
length-bucketed ReDial train batches, this prints:
- whether each variant's gradients repeat to the bit (the first batch, computed 3 times);
- the mean forward+backward time of each, the two taking turns batch by batch, and their ratio.

    python benchmarks/deterministic_kernels.py [--threads 2] [--batches 6]
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from crsbench.config.loader import resolve_config
    from crsbench.datasets.loader import load_dataset
    from crsbench.models.base import CONV, REC
    from crsbench.registry import get_dataset, get_model
    from crsbench.config.loader import stage_settings
    from crsbench.trainer.trainer import batch_order, instance_length

    cls = get_model("kgsf")
    config = resolve_config(cls, get_dataset("redial"))
    data = load_dataset("redial", config["data"])
    train = data.instances["train"]
    torch.manual_seed(0)
    model = cls(config["model"], data.bundle)
    model.fit(train)
    model.train()
    print(f"KGSF, ReDial train batches, CPU, {torch.get_num_threads()} threads, forward + backward")
    for name, task, instances in (("rec", REC, train.rec), ("conv", CONV, train.samples)):
        stage = next(s for s in model.stages() if s.name == name)
        params = list(dict.fromkeys(stage.parameters()))
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        size = stage_settings(config, name)["batch_size"]
        order = batch_order(len(instances), size, [instance_length(x) for x in instances],
                            torch.Generator().manual_seed(0))[:args.batches]
        batches = [model.collate([instances[i] for i in rows], task) for rows in order]

        def step(batch: dict) -> list[torch.Tensor]:
            torch.manual_seed(1)                         # the same dropout masks every call
            out = stage.loss(batch)
            loss = out["loss"] if isinstance(out, dict) else out
            return [g for g in torch.autograd.grad(loss, params, allow_unused=True) if g is not None]

        repeats = {}
        for deterministic in (False, True):
            torch.use_deterministic_algorithms(deterministic)
            first = step(batches[0])
            repeats[deterministic] = all(all(torch.equal(a, b) for a, b in zip(first, step(batches[0])))
                                         for _ in range(2))
        times: dict[bool, list[float]] = {False: [], True: []}
        for timed in (False, True):                      # the first pass warms up
            for batch in batches:
                for deterministic in (False, True):
                    torch.use_deterministic_algorithms(deterministic)
                    t0 = time.perf_counter()
                    step(batch)
                    if timed:
                        times[deterministic].append(time.perf_counter() - t0)
        torch.use_deterministic_algorithms(False)
        default, ordered = (sum(times[d]) / len(times[d]) for d in (False, True))
        print(f"{name:4s} (batch {size:3d}): default kernels {default:.3f} s/step (repeats to the bit: "
              f"{repeats[False]}), deterministic {ordered:.3f} s/step (repeats: {repeats[True]}), "
              f"ratio {ordered / default:.3f}")


if __name__ == "__main__":
    main()
