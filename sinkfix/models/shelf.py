"""The models one process holds: each loaded on first use, then reused."""
from __future__ import annotations

import threading

from sinkfix.models import loading
from sinkfix.models.catalog import Progress
from sinkfix.models.loading import LoadedModel


class ModelShelf:
    """The models one process has loaded: each is loaded on first use, then reused.

    The CLI and library share the default shelf (``get_model``); the API and the dashboard hold
    their own, so tests can empty them and count loads by patching ``sinkfix.models.loading.load_model``
    (looked up at call time).
    """

    def __init__(self, reuse_note: str | None = None) -> None:
        """``reuse_note``, if given, is sent to ``progress`` when a model is served from the shelf."""
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self._reuse_note = reuse_note

    def get(self, name: str, progress: Progress | None = None) -> LoadedModel:
        with self._lock:
            if name not in self._models:
                self._models[name] = loading.load_model(name, progress)
            elif progress and self._reuse_note:
                progress(f"{name} {self._reuse_note}")
            return self._models[name]

    def loaded(self) -> list[str]:
        return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


_default_shelf = ModelShelf()


def get_model(name: str, progress: Progress | None = None) -> LoadedModel:
    """``load_model`` memoised per process, for callers that pass a model by name."""
    return _default_shelf.get(name, progress)
