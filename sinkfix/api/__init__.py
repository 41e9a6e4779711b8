"""The HTTP API: ``uvicorn sinkfix.api:app`` or ``python -m sinkfix serve`` (see the README, "HTTP API").

``app`` (endpoints), ``body`` (the request body and its field list), ``config`` (policy and limits
from the environment, kept in ``sinkfix.policy`` and shared with the dashboard), ``guards`` (token and
body limit, before parsing), ``queue`` (bounded queue per model, one computation per key),
``shelf`` (at most SINKFIX_MAX_MODELS models held), ``errors`` (statuses and bodies).
"""
from sinkfix.api.app import GATES, KEYS, MODELS, AnalyzeRequest, app, reset, store  # noqa: F401
from sinkfix.api.errors import DatabaseUnavailable  # noqa: F401
