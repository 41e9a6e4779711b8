"""The optional packages charts and data frames need, imported on first use with an error that says
how to install them (a bare ImportError from deep inside altair would not)."""
from __future__ import annotations

import importlib
from types import ModuleType

from sinkfix.errors import MissingExtraError

VIZ = 'pip install "sinkfix[viz]"'


def require(*modules: str, what: str = "SinkFix's charts and data frames") -> list[ModuleType]:
    """Import ``modules`` (e.g. "altair", "pandas"), or raise MissingExtraError naming the viz extra."""
    found, missing = [], []
    for name in modules:
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingExtraError(f"{what} need {' and '.join(missing)}, which {verb} not installed here: {VIZ}")
    return found
