"""Built-in models (KGSF) and the building blocks they share. Importing this registers them."""
from crsbench.models import kgsf  # noqa: F401  (registers "kgsf")
from crsbench.models.base import CONV, REC, CRSModel, Stage

__all__ = ["CRSModel", "Stage", "REC", "CONV"]
