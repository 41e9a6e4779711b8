"""The analysis cache: an identical request is served from the run database, with no forward pass.

A request's key hashes everything its result depends on: the model (name, source and weights
fingerprint), the text, the resolved settings and the SinkFix version. A new release therefore
never serves results an older one computed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

from . import __version__
from .analysis import Analysis, analyze, validate_text
from .models import LoadedModel, get_model
from .settings import AnalysisSettings
from .store import Store


def _key(model_name: str, model_id: str, fingerprint: str, text: str, settings: AnalysisSettings,
         version: str) -> str:
    payload = json.dumps(
        {"model": model_name, "model_id": model_id, "fingerprint": fingerprint, "text": text,
         "settings": settings.to_dict(), "version": version},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_key(text: str, model: LoadedModel, settings: AnalysisSettings | None = None,
              version: str = __version__) -> str:
    """The key of analysing ``text`` on ``model`` with ``settings`` (resolved against the model)."""
    resolved = (settings or AnalysisSettings()).resolved(model.n_layers)
    return _key(model.name, model.source, model.fingerprint, text, resolved, version)


def key_of_analysis(analysis: Analysis) -> str:
    """The key of the request that produced ``analysis`` (its settings are already resolved)."""
    return _key(analysis.model_name, analysis.model_id, analysis.fingerprint, analysis.text,
                analysis.settings, analysis.version)


def analyze_or_fetch(text: str, model: LoadedModel | str, settings: AnalysisSettings | None,
                     store: Store) -> tuple[Analysis, bool]:
    """The analysis (with ``run_id`` set) and whether it came from the store.

    On a miss the fresh result is returned, so its maps are float32; a later hit returns the
    stored float16 maps (and corrected maps recomputed from them).
    """
    validate_text(text)
    loaded = get_model(model) if isinstance(model, str) else model
    key = cache_key(text, loaded, settings)
    run_id = store.find(key)
    if run_id is not None:
        return store.get(run_id), True
    result = analyze(text, loaded, settings)
    return dataclasses.replace(result, run_id=store.save(result, key)), False


def analyze_cached(text: str, model: LoadedModel | str, settings: AnalysisSettings | None = None,
                   store: Store | None = None) -> Analysis:
    """``analyze()``, served from ``store`` (default: the SinkFix database) when already run."""
    return analyze_or_fetch(text, model, settings, store if store is not None else Store())[0]
