"""Layered YAML configuration: defaults < model < dataset < user file < --set."""
from crsbench.config.loader import load_saved_config, resolve_config, save_config

__all__ = ["resolve_config", "save_config", "load_saved_config"]
