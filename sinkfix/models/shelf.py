"""The models one process holds: each loaded on first use, then reused."""
from __future__ import annotations

import threading

from sinkfix.models import devices, loading
from sinkfix.models.catalog import Progress
from sinkfix.models.loading import LoadedModel

ShelfKey = tuple[str, str, str]  # (name, device, dtype), with "auto" resolved


class ModelShelf:
    """The models one process has loaded: each is loaded on first use, then reused.

    A model is kept per (name, device, dtype): the same weights in bfloat16 on a GPU and in
    float32 on the CPU are two entries. "auto" is resolved first, so ``device="auto"`` and the
    device it means share one entry.

    The CLI and library share the default shelf (``get_model``); the API and the dashboard hold
    their own, so tests can empty them and count loads by patching ``sinkfix.models.loading.load_model``
    (looked up at call time).
    """

    def __init__(self, reuse_note: str | None = None) -> None:
        """``reuse_note``, if given, is sent to ``progress`` when a model is served from the shelf."""
        self._models: dict[ShelfKey, LoadedModel] = {}
        self._lock = threading.Lock()
        self._reuse_note = reuse_note

    def get(self, name: str, progress: Progress | None = None, device: str = "auto", dtype: str = "auto") -> LoadedModel:
        device_name = devices.resolve_device(device)
        key = (name, device_name, devices.resolve_dtype(dtype, device_name))
        with self._lock:
            if key not in self._models:
                if device == "auto" and dtype == "auto":  # keep the plain call for loaders patched in tests
                    self._models[key] = loading.load_model(name, progress)
                else:
                    self._models[key] = loading.load_model(name, progress, device=key[1], dtype=key[2])
            elif progress and self._reuse_note:
                progress(f"{name} {self._reuse_note}")
            return self._models[key]

    def loaded(self) -> list[str]:
        """Names of the loaded models (one per device and dtype it was loaded with)."""
        return [name for name, _, _ in self._models]

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


_default_shelf = ModelShelf()


def get_model(name: str, progress: Progress | None = None, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """``load_model`` memoised per process and per (name, device, dtype), for callers that pass a model by name."""
    return _default_shelf.get(name, progress, device, dtype)
