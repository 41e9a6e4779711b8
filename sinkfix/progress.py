"""One progress reporter for every long command, and the events the core sends it.

Work in the core reports how far it is through one callback shape, ``Step``: ``(done, total, what)``,
called with the absolute count of the current stage (``what`` names it: "evaluate", "embed (clean)",
"softmax seed 0"...). A step with no count (loading a model, "converting SmolLM2") is a message:
``stage(message)``. ``Reporter`` is both together. Core functions take a ``progress: Step | None``
(model loading takes ``Callable[[str], None]``, a reporter's ``stage``) and never print, so the same
events drive two front ends:

- ``Progress`` (here): on a terminal a tqdm bar with rate and remaining time, redrawn in place;
  elsewhere (logs, pipes, nohup) plain lines, one at each new stage and at most one every ``every``
  seconds (30 by default) in between, never a carriage return;
- the dashboard's ``StatusProgress`` (``dashboard/progress.py``): an ``st.status`` box whose lines
  are the stages and whose ``st.progress`` bar follows the counts. The core never imports Streamlit.

A command holds one ``Progress`` for its whole run and closes it (or uses it as a context manager);
docs/development.md shows how a new command uses it.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from tqdm import tqdm

Step = Callable[[int, int, str], None]  # (done, total, what)
LOG_EVERY_S = 30.0  # off a terminal: at most one line this often within a stage


class Reporter(Protocol):
    """What long work sends: counted steps and stage messages (``Progress`` and the dashboard's adapter)."""

    def __call__(self, done: int, total: int, what: str) -> None: ...

    def stage(self, message: str) -> None: ...


class Progress:
    """Progress on stderr (or ``stream``) for one command: a tqdm bar on a terminal, log lines elsewhere.

    ``what``/``total``/``initial`` open a first counted stage at once (a corpus of ``total`` lines,
    ``initial`` of them already stored); ``__call__`` moves to an absolute count, ``advance`` by a few;
    a new ``what`` or ``total`` starts a new stage. ``enabled=False`` shows nothing (``--quiet``);
    ``terminal`` overrides the ``isatty`` check (tests); ``leave`` keeps the last bar on the terminal.
    """

    def __init__(self, what: str = "", total: int | None = None, *, unit: str = "step", initial: int = 0,
                 stream: TextIO | None = None, terminal: bool | None = None, every: float = LOG_EVERY_S,
                 enabled: bool = True, leave: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = _isatty(self.stream) if terminal is None else terminal
        self.unit, self.every, self.enabled, self.leave, self.clock = unit, every, enabled, leave, clock
        self.what, self.total, self.done = what, total, initial
        self._bar: tqdm | None = None
        self._counting = False  # whether the bar counts (or only shows a stage message)
        self._stage_began = (clock(), initial)
        self._last_line: tuple[float, int] | None = None  # (time, done) of the last log line of this stage
        if total is not None:
            self._show(new_stage=True)

    # ------------------------------------------------------------ events

    def __call__(self, done: int, total: int, what: str) -> None:
        """The current stage is ``what``, ``done`` of ``total`` (the ``Step`` the core calls)."""
        new_stage = what != self.what or total != self.total or self.total is None
        resized = total != self.total
        self.what, self.total, self.done = what, total, done
        if new_stage:
            self._stage_began, self._last_line = (self.clock(), done), None
        self._show(new_stage, resized)

    def advance(self, n: int = 1) -> None:
        """``n`` more steps of the current stage."""
        self.done += n
        self._show(new_stage=False)

    def stage(self, message: str) -> None:
        """A step without a count: a line in a log, the bar's caption on a terminal."""
        if not self.enabled:
            return
        if not self.terminal:
            self._print(f"... {message}")
            return
        if self._bar is None or self._counting:
            self._close_bar()
            self._bar = tqdm(total=None, desc=message, file=self.stream, leave=False, bar_format="{desc} [{elapsed}]")
            self._counting = False
        else:
            self._bar.set_description_str(message)

    def close(self) -> None:
        """End the last stage: the bar goes (unless ``leave``); a log gets its final count if it lacks it."""
        if self.enabled and not self.terminal and self.total is not None and self._last_line is not None \
                and self._last_line[1] != self.done:
            self._print(self._line(final=True))
        self._close_bar()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ drawing

    def _show(self, new_stage: bool, resized: bool = False) -> None:
        if not self.enabled or self.total is None:
            return
        if self.terminal:
            self._draw(new_stage, resized)
            return
        now = self.clock()
        if new_stage or self._last_line is None or now - self._last_line[0] >= self.every:
            self._print(self._line())
            self._last_line = (now, self.done)

    def _draw(self, new_stage: bool, resized: bool) -> None:
        if self._bar is None or not self._counting or resized:
            self._close_bar()
            self._bar = tqdm(total=self.total, initial=self.done, desc=self.what, unit=self.unit, file=self.stream,
                             leave=self.leave, dynamic_ncols=True)
            self._counting = True
            return
        if new_stage:
            self._bar.set_description_str(self.what, refresh=False)
        if self.done < self._bar.n:
            self._bar.reset(total=self.total)
        self._bar.update(self.done - self._bar.n)

    def _line(self, final: bool = False) -> str:
        """``... what: done/total``, with the rate and time left once the stage has run a while."""
        text = f"... {self.what}: {self.done}/{self.total}"
        began, done_then = self._stage_began
        elapsed, steps = self.clock() - began, self.done - done_then
        if final:
            return f"{text} ({duration(elapsed)})"
        if steps <= 0 or elapsed <= 0:
            return text
        rate = steps / elapsed
        left = max(0, (self.total or 0) - self.done) / rate
        return f"{text} ({rate:.3g} {self.unit}/s, about {duration(left)} left)"

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def counter(progress: Step | None, total: int, what: str) -> Callable[[int], None]:
    """A loop's step counter: each call moves ``progress`` on by ``n`` of ``total`` (a no-op without one)."""
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total, what)

    return tick


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream is not a terminal
        return False


def duration(seconds: float) -> str:
    """Seconds for a person: "0.4 s", "27 s", "3 min", "2.5 h"."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds:.1f} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"
