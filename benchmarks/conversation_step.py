"""A conversation training step: scoring the full [B, T, V] distribution vs only the gold positions.

Both variants run the same model (fresh weights, dropout off so the losses can be compared) over the
same length-bucketed batches of the ReDial train split: forward, Eq. 19 loss, backward, Adam step on
the conversation stage's parameters. "full" computes the output distribution at every response
position and masks padding out of the loss; "gold" (what crsbench trains with, `packed_nll`) computes
it only at unpadded positions. Prints the mean step time of each, the ratio, the share of padded
positions, and the largest loss difference.

    python benchmarks/conversation_step.py [--model kgsf|kbrd|transformer] [--batches 8] [--batch 32]
                                           [--device cpu|cuda]

On CUDA the step is the trainer's: float16 autocast with a gradient scaler (`train.amp`), and the
clock waits for the GPU (`torch.cuda.synchronize`) before it is read.
"""
from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from crsbench.models.base import CONV, move_to
from crsbench.models.conversation import generation_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="kgsf")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    from crsbench.config.loader import resolve_config
    from crsbench.datasets.loader import load_dataset
    from crsbench.registry import get_dataset, get_model
    from crsbench.trainer.trainer import batch_order, instance_length
    cls = get_model(args.model)
    config = resolve_config(cls, get_dataset("redial"))
    data = load_dataset("redial", config["data"])
    torch.manual_seed(0)
    model = cls(config["model"], data.bundle).to(device).eval()
    stage = next(s for s in model.stages() if s.task == CONV)
    params = list(dict.fromkeys(stage.parameters()))
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    train = data.instances["train"].samples
    order = batch_order(len(train), args.batch, [instance_length(s) for s in train],
                        torch.Generator().manual_seed(0))[:args.batches]
    batches = [move_to(model.collate([train[i] for i in idx], CONV), device) for idx in order]
    padded = sum((~b["response_mask"]).sum().item() for b in batches) / sum(b["response_mask"].numel() for b in batches)

    def full_loss(batch: dict) -> torch.Tensor:
        if args.model == "kgsf":
            log_probs = model.teacher_forced_log_probs(batch, training=True)
        else:
            log_probs = model.teacher_forced_log_probs(batch)
        return generation_loss(log_probs, batch["response"], batch["response_mask"])

    timings, losses = {}, {}
    for name, loss_fn in (("full", full_loss), ("gold", stage.loss), ("full ", full_loss), ("gold ", stage.loss)):
        optimizer = torch.optim.Adam(params, lr=1e-3)
        scaler = torch.amp.GradScaler("cuda", enabled=cuda)
        snapshot = [p.detach().clone() for p in params]
        values = []
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for batch in batches:
            with torch.autocast("cuda", dtype=torch.float16) if cuda else nullcontext():
                loss = loss_fn(batch)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            values.append(loss.item())
        if cuda:
            torch.cuda.synchronize()
        elapsed = (time.perf_counter() - t0) / len(batches)
        with torch.no_grad():                      # every variant starts from the same weights
            for p, saved in zip(params, snapshot):
                p.copy_(saved)
        timings.setdefault(name.strip(), []).append(elapsed)
        losses[name.strip()] = values
    full, gold = min(timings["full"]), min(timings["gold"])
    diff = max(abs(a - b) for a, b in zip(losses["full"], losses["gold"]))
    print(f"{args.model}: {len(batches)} train batches of {args.batch}, {device}, threads {torch.get_num_threads()}, "
          f"padded response positions {padded:.1%}")
    print(f"full distribution : {full:.3f} s/step")
    print(f"gold positions    : {gold:.3f} s/step")
    print(f"ratio             : {full / gold:.2f}x  (largest loss difference {diff:.2e})")


if __name__ == "__main__":
    main()
