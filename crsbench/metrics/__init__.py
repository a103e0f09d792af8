"""The metrics every model is scored with: names and one-line definitions, for `crsbench list` and
the README. Full definitions in recommendation.py and generation.py."""
from crsbench.metrics.generation import (bleu, cut_response, distinct, generation_metrics, item_ratio,
                                         perplexity)
from crsbench.metrics.recommendation import check_ks, ranking_metrics, target_ranks

# Recommendation metrics are reported per view ("all/recall@10", "dedup/mrr@50", "cold_start/count");
# generation metrics as "gen/<name>". Higher is better for all but ppl.
METRICS: dict[str, str] = {
    "count": "number of instances scored in a view (or responses, for gen/count)",
    "recall@k": "share of (turn, target item) instances whose target ranks in the top k (= Hit@k); "
                "ties with the target count against it",
    "mrr@k": "mean 1/rank of the target, 0 beyond rank k",
    "ndcg@k": "mean 1/log2(rank+1) of the target, 0 beyond rank k (one relevant item)",
    "dist@n": "distinct word n-grams over all responses / number of responses (KGSF), n = 2, 3, 4",
    "dist_ratio@n": "distinct word n-grams / all word n-grams of the responses, n = 2, 3, 4",
    "item_ratio": "movie mentions (@<movieId> tokens) in generated responses / number of responses (NTRD)",
    "bleu@n": "mean sentence-level cumulative BLEU-n against the gold response (nltk smoothing 1), n = 1..4",
    "ppl": "exp(summed NLL of the gold response tokens / their number); lower is better",
}

__all__ = ["METRICS", "bleu", "check_ks", "cut_response", "distinct", "generation_metrics", "item_ratio",
           "perplexity", "ranking_metrics", "target_ranks"]
