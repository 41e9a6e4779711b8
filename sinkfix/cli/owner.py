"""``--owner NAME``: whose rows a command reads and writes. The CLI runs on the machine that holds the
database, so it acts as ``local`` (the owner of everything stored before owners existed, and of every
loopback dashboard's and CLI run) unless told otherwise; a name in ``SINKFIX_ADMINS`` reads every row.
"""
from __future__ import annotations

import argparse

from sinkfix.policy import identity
from sinkfix.policy.ownership import LOCAL_NAME, Viewer

NOT_STORED = ("serve", "dashboard")  # commands that never open the database themselves


def add_owner_everywhere(parser: argparse.ArgumentParser, name: str = "") -> None:
    """Give every command (every leaf of the command tree, but the servers) ``--owner``."""
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in subcommands:
        for command, sub in action.choices.items():
            add_owner_everywhere(sub, command)
    if subcommands or name in NOT_STORED or "--owner" in parser._option_string_actions:
        return
    parser.add_argument("--owner", metavar="NAME", help=f"act as this owner: read their rows and rows shared "
                        f"with them, store new rows as theirs (default: {LOCAL_NAME}, this machine's own user)")


def viewer_of(args: argparse.Namespace) -> Viewer:
    """The command's viewer: ``--owner`` or ``local``, an administrator when ``SINKFIX_ADMINS`` names them."""
    name = getattr(args, "owner", None) or LOCAL_NAME
    return identity.viewer_named(name, identity.admins())
