"""Algorithms layer: synthetic data with the exact parameters that made them."""
