"""Command group: mechanisms experiments (see sinkfix.experiments)."""
from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
