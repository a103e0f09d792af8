"""Greedy decoding of ReDial test samples with KGSF: cached keys/values vs recomputing the prefix.

Both decoders run the same model (same weights, so the same responses, which is checked) over the
first N test samples in batches. "cached" is what crsbench uses (one new position per step);
"recompute" runs the whole prefix through the decoder at every step, the quadratic baseline.
Prints the time of each, the ratio, and the cached time extrapolated to the whole test split.

    python benchmarks/decoding.py [--samples 512] [--batch 128] [--max-length 20] [--device cpu|cuda]
    python benchmarks/decoding.py --run RUNS/redial/kgsf/...   # a trained run instead of fresh weights
    python benchmarks/decoding.py --whole-split                # time the evaluator on the whole test split

`--whole-split` times `evaluate_generation` (what `crsbench run`/`evaluate` do: greedy decoding of
all test samples in length-sorted batches, plus the gold responses' NLL and the recommendations)
instead of comparing decoders. With fresh weights almost no response ends before max length, so
this is an upper bound for a trained model.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from crsbench.models.base import CONV, move_to
from crsbench.models.decoding import greedy


@dataclass
class _Prefix:
    """Decoding state of the recompute baseline: the memories and every token so far."""

    memories: list
    tokens: torch.Tensor
    extras: dict

    def select(self, index: torch.Tensor) -> "_Prefix":
        return _Prefix([(m.index_select(0, index), k.index_select(0, index)) for m, k in self.memories],
                       self.tokens.index_select(0, index), {k: v.index_select(0, index) for k, v in self.extras.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--run", help="a finished KGSF run directory (default: fresh weights)")
    parser.add_argument("--whole-split", action="store_true",
                        help="time the evaluator over the whole test split instead")
    args = parser.parse_args()
    from crsbench.config.loader import resolve_config
    from crsbench.datasets.loader import load_dataset
    from crsbench.registry import get_dataset, get_model
    if args.run:
        from crsbench.runner import load_trained
        model, _ = load_trained(args.run)
        model = model.to(args.device)
    else:
        cls = get_model("kgsf")
        config = resolve_config(cls, get_dataset("redial"))
        torch.manual_seed(0)
        model = cls(config["model"], load_dataset("redial", config["data"]).bundle).to(args.device).eval()
    from crsbench.datasets.instances import build_split_instances
    if args.whole_split:
        from crsbench.evaluator import evaluate_generation
        split = build_split_instances(model.data, "test")
        t0 = time.perf_counter()
        metrics, records = evaluate_generation(model, split, args.batch, args.max_length, 1)
        elapsed = time.perf_counter() - t0
        lengths = [len(r["generated_tokens"].split()) for r in records]
        print(f"whole test split: {len(records)} samples, batch {args.batch}, max length {args.max_length}, "
              f"{args.device}, threads {torch.get_num_threads()}, {'trained' if args.run else 'fresh'} weights")
        print(f"greedy decoding + NLL + recommendations: {elapsed:.1f} s ({elapsed / 60:.2f} min); "
              f"mean response length {sum(lengths) / len(lengths):.1f} tokens")
        return
    test = build_split_instances(model.data, "test").samples
    samples = test[:args.samples]
    vocab = model.data.vocab
    start, end = vocab.index[vocab.START], vocab.index[vocab.END]
    decoder = model.generator.transformer.decoder
    device = torch.device(args.device)

    def recompute_step(last, state: _Prefix):
        tokens = torch.cat([state.tokens, last], dim=1)
        hidden, _ = decoder(tokens, decoder.start(state.memories))
        log_probs = model.generator.log_probs(hidden[:, -1:], state.extras.get("copy"))[:, 0]
        return log_probs, _Prefix(state.memories, tokens, state.extras)

    timings, outputs = {}, {}
    with torch.no_grad(), model.inference():
        batches = [move_to(model.collate(samples[i:i + args.batch], CONV), device)
                   for i in range(0, len(samples), args.batch)]
        for name in ("cached", "recompute"):
            out = []
            t0 = time.perf_counter()
            for batch in batches:
                state, size = model.decode_start(batch)
                if name == "cached":
                    out += greedy(model.decode_step, state, size, start, end, args.max_length, device)
                else:
                    word, entity = model.knowledge()
                    prefix = _Prefix(model.generator.memories(batch, word, entity),
                                     torch.empty(size, 0, dtype=torch.long, device=device), state.extras)
                    out += greedy(recompute_step, prefix, size, start, end, args.max_length, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            timings[name] = time.perf_counter() - t0
            outputs[name] = out
    same = outputs["cached"] == outputs["recompute"]
    per_sample = timings["cached"] / len(samples)
    print(f"{len(samples)} test samples, batch {args.batch}, max length {args.max_length}, {args.device}, "
          f"threads {torch.get_num_threads()}, {'trained' if args.run else 'fresh'} weights")
    print(f"cached keys/values : {timings['cached']:.2f} s")
    print(f"recompute prefix   : {timings['recompute']:.2f} s")
    print(f"ratio              : {timings['recompute'] / timings['cached']:.2f}x  (same responses: {same})")
    print(f"whole test split ({len(test)} samples), cached, extrapolated: {per_sample * len(test) / 60:.1f} min")


if __name__ == "__main__":
    main()
