"""Built-in models (KGSF, registered through its `crsbench.models` entry point) and the building
blocks every model shares."""
from crsbench.models.base import CONV, REC, CRSModel, Stage

__all__ = ["CRSModel", "Stage", "REC", "CONV"]
