"""The server's policy, read from the environment: which models it serves, and its limits.

The HTTP API and the dashboard read the same variables, so a lab sets one allowlist and one set of
limits for both. Everything is an environment variable so that ``uvicorn sinkfix.api:app``,
``python -m sinkfix serve`` (which sets them from its flags) and ``streamlit run`` configure the same
thing. The variables are read per request (a dozen ``getenv`` calls), so tests and a restart can
change them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from sinkfix.errors import SinkFixError
from sinkfix.models import EMBEDDED
from sinkfix.policy import identity
from sinkfix.settings import DEFAULT_MAP_TOKEN_LIMIT

# A generous bound on characters per token, used to cut a text before tokenising it. Real
# tokenizers average 3-5 characters per token on English; a token rarely spans 32 characters
# (a BERT word of up to 100 characters can become one [UNK], and whitespace runs are free, so on
# such pathological texts the cut keeps fewer than max_tokens tokens, and the response says so).
CHARS_PER_TOKEN = 32
DEFAULT_MAX_BODY = 1_000_000  # bytes
DEFAULT_MAX_MODELS = 2
DEFAULT_MAX_CONCURRENCY = 1  # analyses running at once per model: one saturates the CPU cores
DEFAULT_MAX_QUEUE = 16  # requests waiting per model before the server answers 503


class ServerConfigError(SinkFixError):
    """An environment variable of the server holds an unusable value."""


@dataclass(frozen=True)
class ServerConfig:
    """The server's policy (docs/security.md; the README section "HTTP API")."""

    models: tuple[str, ...] = tuple(EMBEDDED)
    max_models: int = DEFAULT_MAX_MODELS
    max_body: int = DEFAULT_MAX_BODY
    token: str | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_queue: int = DEFAULT_MAX_QUEUE
    map_limit: int = DEFAULT_MAP_TOKEN_LIMIT
    tokens: identity.Tokens = ()  # named tokens (SINKFIX_API_TOKENS): each client's owner name
    admins: frozenset[str] = frozenset()  # SINKFIX_ADMINS: owner names that read every stored row

    @classmethod
    def from_env(cls) -> ServerConfig:
        names = [n.strip() for n in os.environ.get("SINKFIX_API_MODELS", "").split(",") if n.strip()]
        return cls(
            models=tuple(names) or tuple(EMBEDDED),
            max_models=_whole("SINKFIX_MAX_MODELS", DEFAULT_MAX_MODELS, 1),
            max_body=_whole("SINKFIX_MAX_BODY", DEFAULT_MAX_BODY, 1),
            token=os.environ.get("SINKFIX_API_TOKEN") or None,
            max_concurrency=_whole("SINKFIX_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY, 1),
            max_queue=_whole("SINKFIX_MAX_QUEUE", DEFAULT_MAX_QUEUE, 0),
            map_limit=_whole("SINKFIX_API_MAP_LIMIT", DEFAULT_MAP_TOKEN_LIMIT, 0),
            tokens=identity.named_tokens(os.environ.get("SINKFIX_API_TOKENS"), "SINKFIX_API_TOKENS"),
            admins=identity.admins(),
        )

    def named_tokens(self) -> identity.Tokens:
        """Every token the API accepts with its owner name; the single SINKFIX_API_TOKEN is ``lab``."""
        unnamed = ((identity.DEFAULT_TOKEN_NAME, self.token),) if self.token else ()
        return identity.with_names(self.tokens + unnamed, "SINKFIX_API_TOKEN(S)")

    def allows(self, model_name: str) -> bool:
        """Exact names only: nothing is resolved on the server's disk for a name not on the list."""
        return model_name in self.models

    def refusal(self) -> str:
        return (f"this server serves only these models: {', '.join(self.models)} "
                "(its administrator sets them with SINKFIX_API_MODELS)")


def _whole(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ServerConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ServerConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def char_budget(max_tokens: int) -> int:
    """How many characters of a text are kept before tokenising, for a token limit."""
    return max_tokens * CHARS_PER_TOKEN
