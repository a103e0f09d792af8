"""The one generic trainer: runs the stages any model declares."""
from crsbench.trainer.trainer import Trainer

__all__ = ["Trainer"]
