"""crsbench: a benchmark framework for conversational recommender systems."""
from crsbench.registry import register_dataset, register_model

__version__ = "0.1.0"
__all__ = ["register_model", "register_dataset", "__version__"]
