"""The admission line: one per model for heavy jobs, first come first served, a few at a time, a bounded
number waiting, with each job's place and an estimate of the wait.

The HTTP API and the dashboard each hold one ``Lines`` in their own process and admit work through
it: the API joins from its event loop and answers 429 with ``Retry-After`` when the line is full;
the dashboard shows a waiting visitor their place and the estimate. ``position`` is 0 for a running
job and k for the k-th in line. The limits are the server's (``SINKFIX_MAX_CONCURRENCY`` running and
``SINKFIX_MAX_QUEUE`` waiting per model), so a lab sets them once for both. The estimate comes from a
moving average of the durations callers ``record``.
"""
from __future__ import annotations

import itertools
import math
import threading
from collections import deque

from sinkfix.errors import SinkFixError

FIRST_GUESS_S = 1.0  # the seconds per job assumed before any was recorded
SMOOTHING = 0.2  # weight of the newest duration in the moving average


class LineFullError(SinkFixError):
    """The model's line already holds as many waiting jobs as the server allows; ``retry_after`` in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Line:
    """One model's line. Tickets are whole numbers; ``leave`` must follow every ``join``."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()
        self._running: set[int] = set()
        self._numbers = itertools.count(1)
        self.seconds_per_job = FIRST_GUESS_S

    def join(self, max_running: int, max_waiting: int) -> int:
        """A ticket: running at once when a slot is free and nobody waits, else at the end of the line.

        Never blocks (the API calls it from its event loop). A full line raises ``LineFullError`` with
        the time until a job joining now would run, as its ``retry_after``."""
        with self._cond:
            ticket = next(self._numbers)
            if not self._waiting and len(self._running) < max_running:
                self._running.add(ticket)
            elif len(self._waiting) < max_waiting:
                self._waiting.append(ticket)
            else:
                retry = max(1, math.ceil(self._estimate(len(self._waiting) + 1, max_running)))
                raise LineFullError(f"the server is busy with {self.model}: {len(self._running)} job(s) running "
                                    f"and {len(self._waiting)} waiting, its limit; try again in about {retry} s",
                                    retry)
            return ticket

    def position(self, ticket: int) -> int:
        with self._cond:
            return self._position(ticket)

    def wait(self, ticket: int, max_running: int, timeout: float | None) -> int:
        """Wait up to ``timeout`` seconds (None: as long as it takes) for the ticket's turn; its
        position afterwards (0: it runs)."""
        with self._cond:
            self._cond.wait_for(lambda: self._admit(ticket, max_running) == 0, timeout)
            return self._position(ticket)

    def leave(self, ticket: int) -> None:
        """Give up the slot or the place in line (finished, failed or abandoned alike); twice is harmless."""
        with self._cond:
            self._running.discard(ticket)
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            self._cond.notify_all()

    def record(self, seconds: float) -> None:
        """How long one job held its slot: the estimates follow a moving average of these."""
        with self._cond:
            self.seconds_per_job = (1 - SMOOTHING) * self.seconds_per_job + SMOOTHING * max(0.0, seconds)

    def estimate(self, position: int, max_running: int) -> float:
        """Seconds until the job at ``position`` runs (0 when it runs): the running jobs and those ahead
        of it finish ``max_running`` at a time, each in the recorded average."""
        with self._cond:
            return self._estimate(position, max_running)

    def counts(self) -> tuple[int, int]:
        """(running, waiting)."""
        with self._cond:
            return len(self._running), len(self._waiting)

    def _estimate(self, position: int, max_running: int) -> float:
        return self.seconds_per_job * math.ceil(max(0, position) / max(1, max_running))

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
    """One line per model name, made on first use (one ``Lines`` per process: the API's, the dashboard's)."""

    def __init__(self) -> None:
        self._lines: dict[str, Line] = {}
        self._lock = threading.Lock()

    def __getitem__(self, model: str) -> Line:
        with self._lock:
            return self._lines.setdefault(model, Line(model))

    def clear(self) -> None:
        with self._lock:
            self._lines.clear()
