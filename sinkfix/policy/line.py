"""A line per model for heavy jobs: first come, first served, a few at a time, a bounded number waiting.

The HTTP API admits requests through ``sinkfix.api.queue`` (counts only: a request does not need to
know its place). A dashboard visitor waits on a page, so the dashboard's line also says where each
job stands: ``position`` is 0 for a running job and k for the k-th in line. The limits are the
server's (``SINKFIX_MAX_CONCURRENCY`` running and ``SINKFIX_MAX_QUEUE`` waiting per model), so a
lab sets them once for both.
"""
from __future__ import annotations

import itertools
import threading
from collections import deque

from sinkfix.errors import SinkFixError


class LineFullError(SinkFixError):
    """The model's line already holds as many waiting jobs as the server allows."""


class Line:
    """One model's line. Tickets are whole numbers; ``leave`` must follow every ``join``."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()
        self._running: set[int] = set()
        self._numbers = itertools.count(1)

    def join(self, max_running: int, max_waiting: int) -> int:
        """A ticket: running at once when a slot is free and nobody waits, else at the end of the line."""
        with self._cond:
            ticket = next(self._numbers)
            if not self._waiting and len(self._running) < max_running:
                self._running.add(ticket)
            elif len(self._waiting) < max_waiting:
                self._waiting.append(ticket)
            else:
                raise LineFullError(f"the server is busy with {self.model}: {len(self._running)} job(s) running "
                                    f"and {len(self._waiting)} waiting, its limit; try again in a few minutes")
            return ticket

    def position(self, ticket: int) -> int:
        with self._cond:
            return self._position(ticket)

    def wait(self, ticket: int, max_running: int, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the ticket's turn; its position afterwards (0: it runs)."""
        with self._cond:
            self._cond.wait_for(lambda: self._admit(ticket, max_running) == 0, timeout)
            return self._position(ticket)

    def leave(self, ticket: int) -> None:
        """Give up the slot or the place in line (finished, failed or abandoned alike)."""
        with self._cond:
            self._running.discard(ticket)
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            self._cond.notify_all()

    def counts(self) -> tuple[int, int]:
        """(running, waiting)."""
        with self._cond:
            return len(self._running), len(self._waiting)

    def _admit(self, ticket: int, max_running: int) -> int:
        """Move the head of the line to running while slots are free (lock held); the ticket's position."""
        while self._waiting and len(self._running) < max_running:
            self._running.add(self._waiting.popleft())
        return self._position(ticket)

    def _position(self, ticket: int) -> int:
        if ticket in self._running:
            return 0
        try:
            return self._waiting.index(ticket) + 1
        except ValueError:
            raise KeyError(f"ticket {ticket} is not in the line for {self.model}") from None


class Lines:
    """One line per model name, made on first use."""

    def __init__(self) -> None:
        self._lines: dict[str, Line] = {}
        self._lock = threading.Lock()

    def __getitem__(self, model: str) -> Line:
        with self._lock:
            return self._lines.setdefault(model, Line(model))

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()
