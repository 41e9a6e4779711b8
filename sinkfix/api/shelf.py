"""The server's models: loaded on first use, at most ``max_models`` held, least recently used evicted.

The core's ModelShelf holds every model it was asked for, which suits one person's CLI or
dashboard; a shared server must bound memory. An evicted model stays alive for the requests
still using it and is freed when they finish.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from sinkfix.models import devices, loading
from sinkfix.models.loading import LoadedModel


class BoundedShelf:
    def __init__(self) -> None:
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()  # guards the dict; held only for dict operations
        self._loading: dict[str, threading.Lock] = {}  # one per name, so a load blocks only its own name
        self.evicted: list[str] = []  # names evicted, oldest first (the health endpoint and tests read it)

    def get(self, name: str, max_models: int, device: str = "auto", dtype: str = "auto") -> LoadedModel:
        """The model ``name`` on ``device`` in ``dtype``; "auto" resolves first, so it shares the entry
        of what it resolves to. An unavailable device is a SinkFixError before anything loads."""
        device = devices.resolve_device(device)
        dtype = devices.resolve_dtype(dtype, device)
        return self._get(name, max_models, device, dtype)

    def _get(self, name: str, max_models: int, device: str, dtype: str) -> LoadedModel:
        entry = name if (device, dtype) == ("cpu", "float32") else f"{name} ({device}, {dtype})"
        return self._held(entry, max_models, lambda: loading.load_model(name, device=device, dtype=dtype))

    def _held(self, name: str, max_models: int, load) -> LoadedModel:
        with self._lock:
            if name in self._models:
                return self._use(name, max_models)
            name_lock = self._loading.setdefault(name, threading.Lock())
        with name_lock:
            with self._lock:
                if name in self._models:  # another request loaded it while this one waited
                    return self._use(name, max_models)
            # load_model is looked up at call time, so tests can patch sinkfix.models.loading.load_model.
            model = load()
            with self._lock:
                self._models[name] = model
                self._loading.pop(name, None)
                return self._use(name, max_models)

    def _use(self, name: str, max_models: int) -> LoadedModel:
        """Mark ``name`` most recently used and evict the least recently used beyond the bound (lock held)."""
        self._models.move_to_end(name)
        while len(self._models) > max_models:
            old, _ = self._models.popitem(last=False)
            self.evicted.append(old)
        return self._models[name]

    def loaded(self) -> list[str]:
        """Names held, least recently used first."""
        with self._lock:
            return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self.evicted.clear()
