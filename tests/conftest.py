"""Shared fixtures. Loaded models are session-scoped: each loads once per test run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# The hub is unreachable here; make transformers fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sinkfix  # noqa: E402

from .tiny_models import ARCHITECTURES, build_tiny_model  # noqa: E402

SEED_TEXT = "[MASK] [MASK] [MASK] [MASK] The actual sentence contains no useful semantic content."


@pytest.fixture(scope="session")
def minilm() -> sinkfix.LoadedModel:
    return sinkfix.get_model("minilm")


@pytest.fixture(scope="session")
def smollm2() -> sinkfix.LoadedModel:
    return sinkfix.get_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight models of every supported architecture, saved so the real loading path runs."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: build_tiny_model(arch, root / arch) for arch in ARCHITECTURES}


@pytest.fixture()
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh database file per test, also exported as SINKFIX_DB for code that reads the env."""
    path = tmp_path / "sinkfix.db"
    monkeypatch.setenv("SINKFIX_DB", str(path))
    return path
