"""Stored results (SQLite) and the comparison table built from them."""
