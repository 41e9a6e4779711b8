"""What every chart builder shares: label colours, token axes, pixels per token, readable field titles,
and the per-token frame. No Streamlit here. Token strings are axis categories and tooltip values,
never spliced into a Vega expression.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from sinkfix.analysis.display import LABEL_COLOR, position_labels, show_token, show_tokens

LABELS = tuple(LABEL_COLOR)
LABEL_COLORS = tuple(LABEL_COLOR.values())
LABEL_LEGEND = alt.Legend(title="label", orient="top")
TOKEN_LABEL_CHARS = 12


def token_axis(n: int, title: str | None = None) -> alt.Axis:
    """Rotated token labels. Above 40 tokens Vega drops overlapping labels ("greedy") so the rest stay readable."""
    return alt.Axis(labelAngle=-60, labelLimit=110, labelOverlap="greedy" if n > 40 else False, title=title)


def label_scale() -> alt.Scale:
    return alt.Scale(domain=list(LABELS), range=list(LABEL_COLORS))


def short_token(token: str, limit: int = TOKEN_LABEL_CHARS) -> str:
    """A token as chart labels show it: the one display of ``sinkfix.analysis.display``, cut with …"""
    return show_token(token, limit)


def token_axis_labels(tokens: Sequence[str]) -> list[str]:
    """"3 ␣the": the position makes repeated tokens ([MASK] [MASK]) distinct categories on an axis."""
    return position_labels(tokens, TOKEN_LABEL_CHARS)


def band(n: int, target: int = 780, low: int = 1, high: int = 30) -> int:
    """Pixels per token: fill about ``target`` px (a wide-layout page is ~900 px) and never exceed it by much."""
    return int(min(high, max(low, target // max(n, 1))))


def token_frame(
    tokens: Sequence[str],
    labels: Sequence[str],
    att_received: Sequence[float],
    value_norm: Sequence[float],
    sink_rate: Sequence[float] | None = None,
) -> pd.DataFrame:
    """The per-token table every token chart reads."""
    frame = pd.DataFrame(
        {
            "index": range(len(tokens)),
            "token": show_tokens(tokens),
            "position": token_axis_labels(tokens),
            "att_received": np.asarray(att_received, dtype=float),
            "value_norm": np.asarray(value_norm, dtype=float),
            "label": list(labels),
        }
    )
    if sink_rate is not None:
        frame["sink_rate"] = np.asarray(sink_rate, dtype=float)
    return frame



_band = band  # the name the builders used before the split

# Legend and axis titles: what a reader calls a stored field (never its raw column name).
FIELD_TITLES = {
    "att_received": "attention received (share)",
    "value_norm": "value norm (÷ max)",
    "sink_rate": "sink rate (share of heads)",
    "alpha": "α",
    "top_alpha": "α of the top sink",
    "entropy": "entropy (nats)",
    "token0_share": "token-0 share",
    "top_contribution_share": "contribution share",
    "sink_mass": "learned-sink mass",
    "gain": "dev gain",
}


def title_of(field: str) -> str:
    """A stored field's readable title ("Δ token0_share" -> "Δ token-0 share")."""
    if field.startswith("Δ "):
        return "Δ " + title_of(field[2:])
    return FIELD_TITLES.get(field, field.replace("_", " "))


def _token_tooltip(frame: pd.DataFrame) -> list:
    fields = [
        alt.Tooltip("index:Q"),
        alt.Tooltip("token:N"),
        alt.Tooltip("label:N"),
        alt.Tooltip("att_received:Q", format=".4f"),
        alt.Tooltip("value_norm:Q", format=".3f"),
    ]
    if "sink_rate" in frame:
        fields.append(alt.Tooltip("sink_rate:Q", format=".2f"))
    return fields


def chart_bytes(chart: alt.TopLevelMixin, fmt: str) -> bytes:
    """PNG or SVG through vl-convert, the same renderer for every chart (the dashboard's downloads too)."""
    buffer = io.StringIO() if fmt == "svg" else io.BytesIO()
    chart.save(buffer, format=fmt, **({"scale_factor": 2} if fmt == "png" else {}))
    value = buffer.getvalue()
    return value.encode() if isinstance(value, str) else value
