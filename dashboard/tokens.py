"""The dashboard's token display: the core's ``sinkfix.analysis.display`` (shared with the CLI, so
``Ġquick`` reads ``␣quick`` on every page and in every printed line), plus dashboard-only names."""
from __future__ import annotations

from sinkfix.analysis.display import (  # noqa: F401  (re-exported for the pages and chart builders)
    CONTINUATION,
    LABEL_CHARS,
    is_special,
    position_labels,
    show_token,
    show_tokens,
)

SINK_COLUMN = "<sink>"  # the learned-sink virtual column (gpt-oss), never a real token
