"""Where tests find the external evaluation data (STS Benchmark, tinyshakespeare): one place.

``SINKFIX_DATA`` if set, else ``../shared/data`` beside the repository. A clone on its own has
neither, so tests that need a file skip with one line naming the variable; CI has the data and
runs them all.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The data folder: ``SINKFIX_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("SINKFIX_DATA", REPO.parent / "shared" / "data"))


def data_path(relative: str) -> Path:
    """A file or folder inside the data folder; it may not exist."""
    return data_dir() / relative


def skip_reason(relative: str) -> str:
    return f"needs {relative} in SINKFIX_DATA (now {data_dir()})"


def needs_data(relative: str) -> pytest.MarkDecorator:
    """Skip the test when ``relative`` is absent from the data folder."""
    return pytest.mark.skipif(not data_path(relative).exists(), reason=skip_reason(relative))


def require_data(relative: str) -> Path:
    """The path of ``relative``; skips the calling test or fixture when it is absent."""
    path = data_path(relative)
    if not path.exists():
        pytest.skip(skip_reason(relative))
    return path
