"""The metrics every model is scored with; definitions in recommendation.py and generation.py."""
from crsbench.metrics.generation import generation_metrics, perplexity
from crsbench.metrics.recommendation import ranking_metrics, target_ranks

METRICS: dict[str, str] = {
    "recall@k": "share of (turn, target item) instances whose target ranks in the top k (= Hit@k)",
    "mrr@k": "mean reciprocal rank of the target, 0 beyond rank k",
    "ndcg@k": "mean 1/log2(rank+1) of the target, 0 beyond rank k",
    "dist@n": "distinct word n-grams over all responses / number of responses (KGSF), n = 2, 3, 4",
    "dist_ratio@n": "distinct word n-grams / all word n-grams of the responses, n = 2, 3, 4",
    "item_ratio": "movie mentions in generated responses / number of responses (NTRD's definition)",
    "bleu@n": "mean cumulative sentence BLEU-n against the gold response (smoothing 1), n = 1..4",
    "ppl": "exp(summed NLL of the gold response tokens / their number)",
}

__all__ = ["METRICS", "ranking_metrics", "target_ranks", "generation_metrics", "perplexity"]
