"""Where SinkFix keeps its data, and where the dashboard's files are.

The cache (run database, converted models) is ``SINKFIX_CACHE`` if set; else ``cache/`` in a
source checkout, as before; else the user's cache directory (``$XDG_CACHE_HOME/sinkfix``, usually
``~/.cache/sinkfix``). An installed wheel never writes inside site-packages.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
# In a wheel the repository's dashboard/ is shipped under sinkfix/_app/ (see setup.py), alone in
# that folder, so putting the folder on sys.path makes ``import dashboard`` work without installing a
# top-level package of that name.
PACKAGED_APP = PACKAGE_DIR / "_app"


def is_source_checkout() -> bool:
    """True when this package runs from a clone (pyproject.toml beside it), not from site-packages."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "dashboard" / "Home.py").is_file()


def user_cache_dir() -> Path:
    """The platform's per-user cache folder for SinkFix (XDG on Linux)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sinkfix"


def cache_dir() -> Path:
    """``SINKFIX_CACHE``, else ``cache/`` in a source checkout, else the user's cache directory."""
    if os.environ.get("SINKFIX_CACHE"):
        return Path(os.environ["SINKFIX_CACHE"])
    return REPO_ROOT / "cache" if is_source_checkout() else user_cache_dir()


def db_path() -> Path:
    """The run database: ``SINKFIX_DB`` if set, else ``sinkfix.db`` in the cache directory."""
    return Path(os.environ.get("SINKFIX_DB") or cache_dir() / "sinkfix.db")


def models_dir() -> Path:
    """Models converted once (SmolLM2's GGUF as safetensors) live here."""
    return cache_dir() / "models"


def dashboard_script() -> Path:
    """The Streamlit entry point: the packaged copy in a wheel, else the checkout's dashboard/Home.py."""
    packaged = PACKAGED_APP / "dashboard" / "Home.py"
    return packaged if packaged.is_file() else REPO_ROOT / "dashboard" / "Home.py"


def streamlit_config() -> Path:
    """The dashboard's Streamlit settings: the packaged copy in a wheel, else the checkout's."""
    packaged = PACKAGED_APP / "streamlit" / "config.toml"
    return packaged if packaged.is_file() else REPO_ROOT / ".streamlit" / "config.toml"
