"""Datasets: raw files -> conversations and knowledge graphs -> evaluation instances (see loader.py)."""
