"""Command line: ``sinkfix COMMAND`` (or ``python -m sinkfix COMMAND``). Errors a user can cause print one line and exit 2.

Every command group is a module of this package with a ``register(commands)`` function; this is
the one place that lists them.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sinkfix.cli import analyze, batch, dashboard, evaluate, evict, findings, lab, longcontext, mechanisms, runs, serve
from sinkfix.cli.owner import add_owner_everywhere
from sinkfix.cli.common import EXIT_USAGE, Parser
from sinkfix.errors import SinkFixError

COMMAND_GROUPS = (analyze, runs, batch, evaluate, longcontext, evict, mechanisms, findings, lab, serve, dashboard)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sinkfix", description="Find, classify and correct attention sinks "
                    "(also run as python -m sinkfix).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in COMMAND_GROUPS:
        group.register(commands)
    analyze.add_model_options_everywhere(parser)  # --device, --dtype, --query-block wherever a model loads
    add_owner_everywhere(parser)  # --owner wherever the run database is read or written
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with analyze.command_context(args):
            return int(args.handler(args) or 0)
    except SinkFixError as error:
        print(f"sinkfix: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sinkfix: interrupted", file=sys.stderr)
        return 130
