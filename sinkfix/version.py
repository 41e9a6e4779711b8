"""The SinkFix version: part of every cache key, so a new release never serves older results."""
__version__ = "0.1.0"
