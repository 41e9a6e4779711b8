"""Recompute the maps of a summary-only corpus run (the drill-down's "recompute maps").

The choice: a **new run** that keeps the maps, linked to the summary-only one by
``parent_run_id``, saved under the request's usual cache key (so ``analyze_cached`` serves it
afterwards). The new run is the viewer's (who may recompute a run shared with them); every line of
*their* corpora that held the old run now holds the new one; the corpus summary does
not change, because the numbers are those of the same text, model and settings. The old run stays
in the history as what the batch stored, so nothing a link pointed to disappears.
"""
from __future__ import annotations

from sinkfix.analysis.pipeline import Progress, analyze
from sinkfix.analysis.result import Analysis
from sinkfix.engines.common import ModelIdentity, request_key_of
from sinkfix.errors import InputError, SettingsError
from sinkfix.models import LoadedModel
from sinkfix.policy.ownership import Viewer
from sinkfix.store import Store


def needs_maps(analysis: Analysis) -> bool:
    """A run that kept no maps although its text is within the map limit: a summary-only corpus run."""
    return analysis.maps is None and analysis.n_tokens <= analysis.settings.map_token_limit


def recompute_maps(store: Store, run_id: int, loaded: LoadedModel, progress: Progress | None = None, *,
                   viewer: Viewer) -> Analysis:
    """The run of the same request with its maps (stored now, or found already stored), ``viewer``'s.
    ``progress`` counts the forward's layers, as ``analyze``'s does."""
    old = store.get(run_id, viewer=viewer)
    if old.maps is not None:
        return old
    if not needs_maps(old):
        raise InputError(f"run {run_id} has {old.n_tokens} tokens, above its map limit "
                         f"({old.settings.map_token_limit}), so it keeps no maps by design")
    if (loaded.name, loaded.fingerprint) != (old.model_name, old.fingerprint):
        raise SettingsError(f"run {run_id} was made with {old.model_name} (weights {old.fingerprint[:12]}); "
                            f"the loaded model is {loaded.name} (weights {loaded.fingerprint[:12]})")
    key = request_key_of(ModelIdentity.of(loaded), old.text, old.settings)
    new_id = store.reuse(key, run_id, viewer=viewer)
    if new_id is None or store.get(new_id, viewer=viewer).maps is None:
        new_id = store.save(analyze(old.text, loaded, old.settings, progress=progress), key, parent_run_id=run_id, viewer=viewer)
    store.relink_corpus_run(run_id, new_id, viewer=viewer)
    return store.get(new_id, viewer=viewer)
