"""Subsets of an output: selection, dedup, and their exactly-once commit."""
