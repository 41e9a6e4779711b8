"""What every command shares: the one-line error parser, JSON and text arguments (progress: sinkfix.progress)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one plain line, like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"sinkfix: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


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
