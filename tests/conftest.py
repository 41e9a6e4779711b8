"""Shared fixtures. Loaded models are session-scoped: each loads once per test run."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The hub is unreachable here; make transformers fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The fused Triton kernels run on CPU tensors through Triton's interpreter; it must be on before
# triton compiles the kernel modules (they are imported lazily, by the fused path only).
os.environ.setdefault("TRITON_INTERPRET", "1")
# A shell's server policy or database (SINKFIX_API_TOKEN, SINKFIX_DB, ...) must not change what the
# tests see; where the data and the converted models live may stay.
for _name in [n for n in os.environ if n.startswith("SINKFIX_") and n not in ("SINKFIX_DATA", "SINKFIX_CACHE")]:
    del os.environ[_name]

import sinkfix  # noqa: E402


def _share_the_cores() -> None:
    """Under pytest-xdist each worker gets its share of the cores for torch's threads: with every
    worker on every core, 2 workers x 2 threads on 2 cores spend their time switching. The CLI
    subprocesses a worker starts get the same share (torch reads OMP_NUM_THREADS), so they also sum
    float32 in the same order as the worker and match its results to the last bits the tests ask for."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


_share_the_cores()

from .tiny_models import ARCHITECTURES, HYBRIDS, build_conformance_model, build_tiny_model  # noqa: E402

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


@pytest.fixture(scope="session")
def hybrid_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, sinkfix.LoadedModel]:
    """Tiny Qwen3-Next (gated attention), Jamba and LFM2, attention in layers 1 and 3 of 4, loaded once."""
    root = tmp_path_factory.mktemp("hybrid_models")
    return {arch: sinkfix.load_model(str(build_conformance_model(arch, root / arch))) for arch in HYBRIDS}


@pytest.fixture(scope="session", autouse=True)
def _session_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module- and session-scoped fixtures write to a database of this run, never to cache/sinkfix.db."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SINKFIX_DB", str(tmp_path_factory.mktemp("session-db") / "sinkfix.db"))
        yield


@pytest.fixture(autouse=True)
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh database file for every test (autouse: no test sees runs another test left), exported
    as SINKFIX_DB for code that reads the env; tests that read it ask for it by name."""
    path = tmp_path / "sinkfix.db"
    monkeypatch.setenv("SINKFIX_DB", str(path))
    return path
