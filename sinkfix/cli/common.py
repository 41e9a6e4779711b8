"""What every command shares: the one-line error parser, progress on stderr, JSON and text arguments."""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one plain line, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"sinkfix: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def stderr_progress(total: int = 4) -> tuple[Callable[[str], None], Callable[[], None]]:
    """A stage indicator on stderr (model loading has a handful of stages, not a byte count).

    On a terminal it redraws one line; elsewhere (logs, pipes) each stage is a line of its own.
    """
    if not sys.stderr.isatty():
        return (lambda message: print(f"... {message}", file=sys.stderr, flush=True)), (lambda: None)
    bar = tqdm(total=total, file=sys.stderr, bar_format="{desc} [{elapsed}]", leave=False)

    def step(message: str) -> None:
        bar.set_description_str(message)
        bar.update(1)

    return step, bar.close


class StageProgress:
    """Progress on stderr driven by the experiments' (done, total, what) callback: a tqdm bar on a
    terminal; elsewhere (logs, pipes, nohup) a line per new stage and at most one every ``every`` s,
    so a long job in a log still says how far it is."""

    def __init__(self, every: float = 30.0) -> None:
        self.bar: tqdm | None = None
        self.every = every
        self.last: tuple[str, float] | None = None

    def __call__(self, done: int, total: int, what: str) -> None:
        if not sys.stderr.isatty():
            self._line(done, total, what)
            return
        if self.bar is None:
            self.bar = tqdm(total=total, file=sys.stderr, leave=False)
        self.bar.set_description_str(what)
        self.bar.n = done
        self.bar.refresh()

    def _line(self, done: int, total: int, what: str) -> None:
        now = time.monotonic()
        if self.last is None or self.last[0] != what or now - self.last[1] >= self.every:
            print(f"... {what}: {done}/{total}", file=sys.stderr, flush=True)
            self.last = (what, now)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_json(data: object, target: str) -> None:
    """``-`` means stdout, and then nothing else goes to stdout."""
    text = json.dumps(data)
    if target == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        Path(target).write_text(text + "\n")
        print(f"wrote {target}", file=sys.stderr)


def read_text_arg(text: str) -> str:
    return sys.stdin.read() if text == "-" else text
