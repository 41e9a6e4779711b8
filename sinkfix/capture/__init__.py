"""Attention capture: the registered attention function, its observers, and the W_O/value adapters."""
