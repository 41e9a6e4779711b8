"""Which models a visitor may load: the exact names on the server's list, nothing resolved on disk first.

The HTTP API and the dashboard ask the same question here, so a lab's allowlist
(``SINKFIX_API_MODELS``, default: the embedded models) covers both. A name off the list gets the
same one line whatever it is: an existing folder, a missing path, ``/etc`` or a hub id. Nothing
about the server's disk is looked up for it, so the answer cannot tell them apart.
"""
from __future__ import annotations

from sinkfix.errors import SinkFixError
from sinkfix.policy.config import ServerConfig


class ModelNotAllowedError(SinkFixError):
    """The model is not on this server's list (SINKFIX_API_MODELS)."""


def check_model(name: str, config: ServerConfig | None = None) -> None:
    """Refuse ``name`` unless it is on the list, before anything touches the name."""
    config = config or ServerConfig.from_env()
    if not config.allows(name):
        raise ModelNotAllowedError(config.refusal())
