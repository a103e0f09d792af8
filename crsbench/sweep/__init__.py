"""Sweeps: a benchmark table (rows x seeds x datasets) declared in one file and run as ordinary runs."""
