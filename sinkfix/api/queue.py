"""Admission control: a bounded queue per model, and one computation per cache key.

A request that must run an analysis is first *admitted* (from the event loop, without a thread):
at most ``max_concurrency`` run per model and ``max_queue`` wait; beyond that the server answers
503 with ``Retry-After`` at once, so a burst cannot pile up threads. Identical requests arriving
together share one computation: the second waits on the key's lock, then finds the stored run.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Busy(Exception):
    """The model's queue is full; ``retry_after`` is a whole number of seconds."""

    def __init__(self, model: str, retry_after: int) -> None:
        super().__init__(f"the server is busy with {model}: its queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class Gate:
    """One model's queue: ``admitted`` counts running and waiting requests, ``running`` the former."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.admitted = 0
        self.running = 0
        self.seconds_per_run = 1.0  # a moving average, for Retry-After

    def admit(self, name: str, max_concurrency: int, max_queue: int) -> None:
        with self._cond:
            if self.admitted >= max_concurrency + max_queue:
                wait = self.seconds_per_run * (self.admitted - max_concurrency + 1) / max_concurrency
                raise Busy(name, max(1, math.ceil(wait)))
            self.admitted += 1

    def leave(self) -> None:
        """Undo ``admit``: called once the request is done, whatever happened."""
        with self._cond:
            self.admitted -= 1

    @contextmanager
    def slot(self, max_concurrency: int) -> Iterator[None]:
        """Wait (in a worker thread) until fewer than ``max_concurrency`` analyses of this model run."""
        with self._cond:
            self._cond.wait_for(lambda: self.running < max_concurrency)
            self.running += 1
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self._cond.notify_all()

    def record(self, seconds: float) -> None:
        with self._cond:
            self.seconds_per_run = 0.8 * self.seconds_per_run + 0.2 * seconds


class Gates:
    def __init__(self) -> None:
        self._gates: dict[str, Gate] = {}
        self._lock = threading.Lock()

    def __getitem__(self, model: str) -> Gate:
        with self._lock:
            return self._gates.setdefault(model, Gate())

    def clear(self) -> None:
        with self._lock:
            self._gates.clear()


class KeyLocks:
    """A lock per cache key, dropped when nobody holds or waits for it (so the dict stays small)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[threading.Lock, int]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._lock:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
