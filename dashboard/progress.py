"""The core's progress events (``sinkfix.progress``) drawn in an ``st.status`` box.

``StatusProgress`` is the dashboard's ``Reporter``: the CLI's ``Progress`` takes the same calls. A
stage message (``stage``: loading a model, "clean forward over 3 texts") becomes a line of the box;
a count (``(done, total, what)``) moves its ``st.progress`` bar. Counts are sent to the browser at
most every ``every`` seconds: a per-token callback (stream mode) would otherwise send thousands of
websocket messages for one run. A new stage and the last step of one always show.
"""
from __future__ import annotations

import time
from collections.abc import Callable

# How often a count may redraw the bar (seconds).
PROGRESS_EVERY_S = 0.25


class StatusProgress:
    """Stages as lines of ``status`` (an ``st.status`` box), counts on a progress bar inside it."""

    def __init__(self, status, first: str = "loading the model", unit: str = "", every: float = PROGRESS_EVERY_S,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.status, self.unit, self.every, self.clock = status, unit, every, clock
        self.bar = status.progress(0.0, text=first)
        self._what: str | None = None
        self._drawn = float("-inf")

    def __call__(self, done: int, total: int, what: str) -> None:
        now = self.clock()
        if what == self._what and done < total and now - self._drawn < self.every:
            return
        self._what, self._drawn = what, now
        self.bar.progress(min(done / max(total, 1), 1.0), text=f"{what}: {done} of {total}{self.unit}")

    def stage(self, message: str) -> None:
        self.status.write(message)

    def layers(self, done: int, total: int) -> None:
        """``analyze``'s own callback (it counts the forward's layers) on the same bar."""
        self(done, total, "layers")
