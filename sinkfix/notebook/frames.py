"""pandas DataFrames of results: ``analysis.frame("tokens" | "heads")`` and ``Store.frame()``.

Numbers stay numbers in their stored units (a share is a fraction in [0, 1], never a percent string;
entropy is in nats); a quantity the model does not have is NaN, never None. The columns:

``tokens`` (one row per token, the per-token CSV plus ``shown``):
    index (position, from 0), token (the tokenizer's string), shown (as charts show it: ␣ a leading
    space, ↵ a newline, · a word continuation), att_received (share of all attention the token
    receives; sums to 1), value_norm (its value-vector norm at the settings' layer ÷ the largest, in
    [0, 1]), sink_rate (share of heads whose α of the token exceeds ε, in [0, 1]), label.
``heads`` (one row per attention layer and head, ``Analysis.head_table()``):
    layer (the model's layer number), head, top_token (position of the head's strongest sink by α),
    top_token_text, top_alpha (its α, in [0, 1]), entropy (mean row entropy, nats), token0_share
    (share of the head's attention on token 0), top_contribution_share (the top sink's share of the
    head's norm-based contribution; NaN without an output-projection adapter), gate (mean output gate
    sigmoid(g) of gated attention; NaN for ungated models).
``Store.frame()`` (one row per stored run, newest first, as ``sinkfix runs list`` lists them):
    id, created_at (UTC timestamp), model, text, n_tokens, n_beneficial, n_detrimental, n_neutral,
    has_maps, and any column the store's listing adds.
"""
from __future__ import annotations

from typing import Any

from sinkfix.analysis.display import show_tokens
from sinkfix.errors import SettingsError
from sinkfix.notebook.extras import require

FRAMES = ("tokens", "heads")
TOKEN_COLUMNS = ["index", "token", "shown", "att_received", "value_norm", "sink_rate", "label"]
HEAD_COLUMNS = ["layer", "head", "top_token", "top_token_text", "top_alpha", "entropy", "token0_share",
                "top_contribution_share", "gate"]
RUN_COLUMNS = ["id", "created_at", "model", "text", "n_tokens", "n_beneficial", "n_detrimental", "n_neutral",
               "has_maps"]


def analysis_frame(analysis: Any, name: str = "tokens") -> Any:
    """``analysis.frame(name)``: the tokens or heads of one analysis as a DataFrame (columns above)."""
    if name not in FRAMES:
        raise SettingsError(f"frame must be one of {', '.join(FRAMES)}, got {name!r}")
    (pd,) = require("pandas", what="data frames")
    if name == "tokens":
        frame = pd.DataFrame(analysis.token_table(), columns=[c for c in TOKEN_COLUMNS if c != "shown"])
        frame.insert(2, "shown", show_tokens(analysis.tokens))
        return frame
    frame = pd.DataFrame(analysis.head_table(), columns=HEAD_COLUMNS)
    for column in ("top_contribution_share", "gate"):  # None (not measured) becomes NaN in a float column
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def runs_frame(rows: list[dict]) -> Any:
    """Stored runs' light rows (``Store.list``) as a DataFrame, ``created_at`` as UTC timestamps."""
    (pd,) = require("pandas", what="data frames")
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else RUN_COLUMNS)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame
