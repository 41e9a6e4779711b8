"""The analysis cache: an identical request is served from the run database, with no forward pass.

This is the service layer's one path down: the key is computed (``sinkfix.store.keys``), and on a
miss the analysis runs (``analyze`` validates the text, once) and is saved under that key. A text
that fails validation has no stored run, so the lookup before it can only miss.

The key does not name the owner; the cache is per owner all the same (``Store.reuse``): a viewer is
served their own run, or their own copy of a run they may read, never another owner's private run.
"""
from __future__ import annotations

import dataclasses

from sinkfix.version import __version__
from sinkfix.analysis.pipeline import Progress, analyze
from sinkfix.analysis.result import Analysis
from sinkfix.models import LoadedModel, get_model
from sinkfix.policy.ownership import LOCAL, Viewer
from sinkfix.settings import AnalysisSettings
from sinkfix.store import Store
from sinkfix.store.keys import key_of_analysis, request_key

__all__ = ["analyze_cached", "analyze_or_fetch", "cache_key", "key_of_analysis"]


def cache_key(text: str, model: LoadedModel, settings: AnalysisSettings | None = None,
              version: str = __version__) -> str:
    """The key of analysing ``text`` on ``model`` with ``settings`` (resolved against the model)."""
    resolved = (settings or AnalysisSettings()).resolved(model.n_layers, getattr(model, "attention_layers", None))
    return request_key(model.name, model.source, model.fingerprint, text, resolved.key_dict(), version,
                       getattr(model, "device_name", None), getattr(model, "dtype_name", None))


def analyze_or_fetch(text: str, model: LoadedModel | str, settings: AnalysisSettings | None,
                     store: Store, parent_run_id: int | None = None,
                     progress: Progress | None = None, *, viewer: Viewer) -> tuple[Analysis, bool]:
    """The analysis (with ``run_id`` set), stored as ``viewer``'s, and whether it came from the store.

    On a miss the fresh result is returned, so its maps are float32; a later hit returns the
    stored float16 maps (and corrected maps recomputed from them). ``parent_run_id`` records that
    this request re-runs an earlier run with changed settings.
    """
    loaded = get_model(model) if isinstance(model, str) else model
    key = cache_key(text, loaded, settings)
    run_id = store.reuse(key, parent_run_id, viewer=viewer)
    if run_id is not None:
        return store.get(run_id, viewer=viewer), True
    result = analyze(text, loaded, settings, progress=progress)
    run_id = store.save(result, key, parent_run_id=parent_run_id, viewer=viewer)
    return dataclasses.replace(result, run_id=run_id, parent_run_id=parent_run_id), False


def analyze_cached(text: str, model: LoadedModel | str, settings: AnalysisSettings | None = None,
                   store: Store | None = None, viewer: Viewer = LOCAL) -> Analysis:
    """``analyze()``, served from ``store`` (default: the SinkFix database) when already run. A script on
    this machine is ``local``, as the CLI is."""
    return analyze_or_fetch(text, model, settings, store if store is not None else Store(), viewer=viewer)[0]
