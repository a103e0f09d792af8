"""Baseline models. They register through the `crsbench.models` entry-point group (setup.py),
exactly as a third-party package would; crsbench itself never imports this package by name."""
