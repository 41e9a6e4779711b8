"""Pure chart builders for the long-run view: a run of 2k-32k tokens that keeps no attention maps.

What is drawn comes from the per-token and per-head rows the store keeps in plain tables (no blob):
- the whole text as a strip: each bin of consecutive tokens shows its largest att_received (a sink is
  a spike, so the bin's maximum keeps it visible) and is brushable: dragging selects a span;
- the selected span token by token (zoom and pan with the mouse wheel and drag);
- a layer x head grid coloured by the position of each head's top sink (α over visible queries).
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from .base import LABEL_LEGEND, label_scale

MAX_BINS = 1000  # bars in the overview strip, whatever the length: about one per pixel pair, drawn fast
STRIP_WIDTH = 900
LABEL_RANK = {"detrimental": 2, "beneficial": 1, "neutral": 0}
RANK_LABEL = {rank: label for label, rank in LABEL_RANK.items()}


def bin_size(n_tokens: int, max_bins: int = MAX_BINS) -> int:
    return max(1, -(-n_tokens // max_bins))


def strip_frame(att: np.ndarray, rate: np.ndarray, ranks: np.ndarray, size: int) -> pd.DataFrame:
    """Bins of ``size`` consecutive tokens: [start, end), the largest att_received and where it is, the
    largest sink rate, and the strongest label in the bin (``LABEL_RANK``: detrimental > beneficial >
    neutral). The inputs are per-token arrays (``Store.token_strengths`` columns)."""
    n = len(att)
    if n == 0:
        return pd.DataFrame(columns=["start", "end", "att_max", "at", "sink_rate_max", "label"])
    pad = (-n) % size
    grid = lambda values, fill: np.concatenate([np.asarray(values, dtype=float), np.full(pad, fill)]).reshape(-1, size)  # noqa: E731
    att_bins = grid(att, -np.inf)
    starts = np.arange(0, n, size)
    return pd.DataFrame({
        "start": starts,
        "end": np.minimum(starts + size, n),
        "att_max": att_bins.max(axis=1),
        "at": starts + att_bins.argmax(axis=1),
        "sink_rate_max": grid(rate, -np.inf).max(axis=1),
        "label": [RANK_LABEL[int(r)] for r in grid(ranks, 0).max(axis=1)],
    })


def overview_strip(frame: pd.DataFrame, n_tokens: int, span: tuple[int, int] | None = None) -> alt.LayerChart:
    """The whole text: one bar per bin (its largest att_received, square-root scale so the tail shows),
    coloured by the strongest label; drag across it to select a span (selection parameter ``span``,
    on ``start``). The span shown below is shaded."""
    size = int(frame["end"].iloc[0] - frame["start"].iloc[0]) if len(frame) else 1
    x = alt.X("start:Q", title=f"token position (each bar: {size} token{'s' if size > 1 else ''}, its largest value)",
              scale=alt.Scale(domain=[0, n_tokens], nice=False), axis=alt.Axis(format="~s", labelAngle=0))
    brush = alt.selection_interval(name="span", encodings=["x"])
    bars = alt.Chart(frame).mark_bar(binSpacing=0).encode(
        x=x, x2="end:Q",
        # y2 = 0: with a ranged x, Vega-Lite would otherwise draw each bar as a thin tick at its value.
        y=alt.Y("att_max:Q", title="attention received (√ scale)", scale=alt.Scale(type="sqrt")), y2=alt.datum(0),
        color=alt.Color("label:N", scale=label_scale(), legend=LABEL_LEGEND),
        tooltip=[alt.Tooltip("start:Q", title="from"), alt.Tooltip("end:Q", title="to (excl.)"),
                 alt.Tooltip("att_max:Q", title="largest att_received", format=".4f"),
                 alt.Tooltip("at:Q", title="at position"),
                 alt.Tooltip("sink_rate_max:Q", title="largest sink rate", format=".2f"), "label:N"],
    ).add_params(brush)
    # A bar is about a pixel wide: the bins holding a beneficial or detrimental token also get a dot, so
    # the sinks along a 32k-token text can be found at a glance.
    marked = alt.Chart(frame[frame["label"] != "neutral"]).mark_point(filled=True, size=45, opacity=1).encode(
        x=alt.X("at:Q", scale=alt.Scale(domain=[0, n_tokens], nice=False)), y="att_max:Q",
        color=alt.Color("label:N", scale=label_scale(), legend=LABEL_LEGEND),
        tooltip=[alt.Tooltip("at:Q", title="position"), alt.Tooltip("att_max:Q", format=".4f", title="att_received"),
                 "label:N"])
    layers: list = [bars, marked]
    if span is not None:
        shade = pd.DataFrame({"start": [span[0]], "end": [span[1]]})
        layers.insert(0, alt.Chart(shade).mark_rect(color="#ff2d95", opacity=0.12).encode(x="start:Q", x2="end:Q"))
    return alt.layer(*layers).properties(width=STRIP_WIDTH, height=140,
                                         title="Attention received along the whole text (drag to select a span)")


def span_bars(frame: pd.DataFrame) -> alt.Chart:
    """The selected span token by token; the x axis zooms (wheel) and pans (drag)."""
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("index:Q", title="token position", axis=alt.Axis(format="d", labelAngle=0),
                scale=alt.Scale(domain=[int(frame["index"].min()), int(frame["index"].max()) + 1], nice=False)),
        y=alt.Y("att_received:Q", title="attention received"),
        color=alt.Color("label:N", scale=label_scale(), legend=LABEL_LEGEND),
        tooltip=["index:Q", "token:N", "label:N", alt.Tooltip("att_received:Q", format=".5f"),
                 alt.Tooltip("value_norm:Q", format=".3f"), alt.Tooltip("sink_rate:Q", format=".2f")],
    ).properties(width=STRIP_WIDTH, height=180,
                 title=f"Tokens {int(frame['index'].min())}–{int(frame['index'].max())}, one bar each "
                       "(wheel to zoom, drag to pan)").interactive(bind_y=False)


def sink_positions(heads: pd.DataFrame) -> pd.DataFrame:
    """Store.head_rows as the grid reads them: layer, head, the top sink's position, text and α."""
    return pd.DataFrame({"layer": heads["layer"], "head": heads["head"], "position": heads["top_token"],
                         "token": heads["token"], "alpha": heads["top_alpha"]})


def sink_position_grid(frame: pd.DataFrame, n_tokens: int) -> alt.Chart:
    """A layer x head grid coloured by where each head's top sink is (log position, so token 0, the first
    few tokens and the far text get distinct colours); darker cells have a weaker α."""
    n_layers = int(frame["layer"].nunique())
    n_heads = int(frame["head"].max()) + 1
    cell_w = int(min(36, max(14, 520 // n_heads)))
    cell_h = int(min(26, max(10, 420 // n_layers)))
    shown = frame.assign(position_1=frame["position"] + 1)
    return alt.Chart(shown).mark_rect(stroke="white", strokeWidth=0.5).encode(
        x=alt.X("head:O", title="head", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("layer:O", title="layer"),
        color=alt.Color("position_1:Q", title="top sink position + 1 (log)",
                        scale=alt.Scale(type="log", domain=[1, max(2, n_tokens)], scheme="turbo")),
        opacity=alt.Opacity("alpha:Q", title="α of the top sink", scale=alt.Scale(domain=[0, 1], range=[0.35, 1])),
        tooltip=["layer:O", "head:O", alt.Tooltip("position:Q", title="top sink position"), "token:N",
                 alt.Tooltip("alpha:Q", format=".3f", title="α")],
    ).properties(width=n_heads * cell_w, height=n_layers * cell_h, title="Each head's top sink position")
