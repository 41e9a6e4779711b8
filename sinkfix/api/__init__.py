"""The HTTP API: ``uvicorn sinkfix.api:app`` or ``python -m sinkfix serve`` (see the README, "HTTP API").

``app`` (endpoints), ``body`` (the request body and its field list), ``config`` (policy and limits
from the environment, kept in ``sinkfix.policy`` and shared with the dashboard), ``guards`` (token and
body limit, before parsing), ``keylocks`` (one computation per cache key; admission is the line of
``sinkfix.policy.line``, shared in kind with the dashboard),
``shelf`` (at most SINKFIX_MAX_MODELS models held), ``errors`` (statuses and bodies).
"""
from sinkfix.api.app import KEYS, LINES, MODELS, AnalyzeRequest, app, reset, store  # noqa: F401
from sinkfix.api.errors import DatabaseUnavailable  # noqa: F401
