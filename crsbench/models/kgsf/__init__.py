"""KGSF: modules named after the paper's parts (knowledge.py §4.1, mim.py §4.2, recommender.py §4.3)."""
from crsbench.models.kgsf.model import KGSF

__all__ = ["KGSF"]
