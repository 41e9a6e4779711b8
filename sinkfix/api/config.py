"""The API's policy and limits: they live in ``sinkfix.policy.config``, shared with the dashboard."""
from sinkfix.policy.config import (  # noqa: F401
    CHARS_PER_TOKEN,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_MODELS,
    DEFAULT_MAX_QUEUE,
    ServerConfig,
    ServerConfigError,
    char_budget,
)
