"""Where SinkFix keeps its data: ``cache/`` beside the package, or ``SINKFIX_CACHE``."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("SINKFIX_CACHE", REPO_ROOT / "cache"))


def db_path() -> Path:
    """The run database: ``SINKFIX_DB`` if set, else ``cache/sinkfix.db``."""
    return Path(os.environ.get("SINKFIX_DB", cache_dir() / "sinkfix.db"))


def models_dir() -> Path:
    return cache_dir() / "models"
