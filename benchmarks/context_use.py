"""Does a conversation model use its context? Gold-response perplexity on a split with every sample's
own context against the context of another, randomly paired sample (seeded), in one run.

    python benchmarks/context_use.py RUN_DIR [RUN_DIR ...] [--split test] [--samples 2000] [--seed 0]

A decoder that reads its encoder scores the gold response better with the right context; a ratio
(shuffled / own) near 1 means the decoder ignores what it is given (issue 12 §3). The pairing is a
random permutation of the chosen samples, the same for every run given the seed, so two models are
measured on identical pairs.
"""
from __future__ import annotations

import argparse


def perplexities(run_dir: str, split: str, samples: int, seed: int, batch_size: int) -> tuple[float, float, int]:
    """(own-context perplexity, another sample's context perplexity, samples scored) of one finished
    run: `crsbench.evaluator.evaluate_context_use` (what the trainer logs per conversation epoch as
    gen/context_gain) on a fixed random subset of the split."""
    from crsbench.datasets.loader import load_dataset
    from crsbench.evaluator import evaluate_context_use
    from crsbench.runner import load_trained
    model, config = load_trained(run_dir)
    data = load_dataset(model.data.name, config["data"])
    chosen = data.instances[split].sample(samples, seed=seed)
    result = evaluate_context_use(model, chosen, batch_size, seed=seed + 1)
    return result["gen/ppl"], result["gen/ppl_other_context"], len(chosen.samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished runs of conversation models")
    parser.add_argument("--split", default="test")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    from loguru import logger
    logger.remove()
    print("| run | samples | ppl, own context | ppl, another sample's context | ratio |")
    print("|---|---|---|---|---|")
    for run in args.runs:
        own, other, n = perplexities(run, args.split, args.samples, args.seed, args.batch_size)
        print(f"| {run} | {n} | {own:.2f} | {other:.2f} | {other / own:.3f} |")


if __name__ == "__main__":
    main()
