"""The SinkFix version, in this one place: pyproject.toml reads it for the wheel, and it is part of
every cache key, so a new release never serves older results."""
__version__ = "0.3.0"
