"""The metrics every model is scored with. `definitions` says what each one is (definition,
direction, level) without importing torch; `recommendation` and `generation` compute them."""
from crsbench.metrics.definitions import METRICS, Metric, metric, parse

__all__ = ["METRICS", "Metric", "metric", "parse"]
