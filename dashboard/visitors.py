"""What a visitor may make this dashboard do: allowed models only, one heavy job per model at a time in a
bounded line whose position and expected wait show on the page, texts within the server's limit.

The rules are the core's (``sinkfix.policy``; the admission line is ``sinkfix.policy.line``, the same
class the HTTP API admits requests with); this module only puts them on a page. The line is one per
server process (module state), so every visitor's session shares it.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import streamlit as st

from sinkfix import models
from sinkfix.models.loading import LoadedModel
from sinkfix.policy import Lines, ServerConfig, check_model, check_text
from sinkfix.progress import duration

LINES = Lines()
POLL_SECONDS = 0.5  # how often a waiting page redraws its place in line (and notices the visitor left)


class GuardedShelf(models.ModelShelf):
    """The dashboard's model shelf: a name off the server's list is refused before anything loads."""

    def get(self, name: str, *args, **kwargs) -> LoadedModel:
        check_model(name)
        return super().get(name, *args, **kwargs)


def limits() -> ServerConfig:
    return ServerConfig.from_env()


def check_texts(*texts: str, what: str = "the text") -> None:
    """Refuse a typed, pasted or uploaded text (or a corpus of them together) over the server's limit."""
    check_text("\n".join(texts), limits().max_body, what)


@contextmanager
def turn(model: str, where=None) -> Iterator[None]:
    """Hold one of ``model``'s running slots for the block, waiting in line first if need be.

    A full line raises LineFullError (a SinkFixError: the caller's error box shows it). While waiting,
    ``where`` (a container, e.g. an st.status box; default the page) shows the place in line.
    """
    check_model(model, limits())  # a refused name never takes a place in line
    with job_turn(model, where):
        yield


@contextmanager
def job_turn(job: str, where=None) -> Iterator[None]:
    """``turn`` for work that loads no model by name (the lab's training): one line per job name."""
    config = limits()
    line = LINES[job]
    ticket = line.join(config.max_concurrency, config.max_queue)
    try:
        position = first = line.position(ticket)
        if position:
            box = (where or st).empty()
            while position:
                running, waiting = line.counts()
                wait = line.estimate(position, config.max_concurrency)
                box.info(f"Waiting for {job}: number {position} in line ({running} running, {waiting} waiting; "
                         f"{_per_model(config.max_concurrency)} on this server), about {duration(wait)} to go.",
                         icon=":material/hourglass_top:")
                position = line.wait(ticket, config.max_concurrency, POLL_SECONDS)
            box.caption(f"Waited in line for {job}: number {first} when this job was asked for.")
        started = time.perf_counter()
        yield
        line.record(time.perf_counter() - started)  # a finished job's time feeds the next visitors' estimate
    finally:
        line.leave(ticket)


def _per_model(slots: int) -> str:
    return "one job per model runs at a time" if slots == 1 else f"{slots} jobs per model run at once"



class Turns:
    """For a job that asks for its model by name (the experiment sections' ``work(get, progress)``):
    ``take(name)`` takes that model's turn once, held until the ``with`` block ends."""

    def __init__(self, where=None) -> None:
        self._stack = ExitStack()
        self._held: set[str] = set()
        self._where = where

    def __enter__(self) -> Turns:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def take(self, name: str) -> None:
        if name not in self._held:
            self._stack.enter_context(turn(name, self._where))
            self._held.add(name)
