"""Pure chart builders: plain data in, ``alt.Chart`` out. No Streamlit here, so tests need no browser.

Token strings are user data. Vega draws them as SVG/canvas text and its tooltip escapes HTML,
so they never reach the page as markup.
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from .base import (  # noqa: F401  (re-exported: pages and other builders import them from here)
    FIELD_TITLES, LABEL_COLORS, LABEL_LEGEND, LABELS, TOKEN_LABEL_CHARS, _band, _token_tooltip, band, label_scale,
    short_token, title_of, token_axis, token_axis_labels, token_frame,
)
from sinkfix.analysis.display import SINK_COLUMN, show_tokens

SINK_COLOR = "#6a51a3"  # the learned-sink virtual column: outlined, dashed, never a label colour

# ---------------------------------------------------------------- one run, per token


def token_strip(tokens: Sequence[str], labels: Sequence[str], per_row: int = 12) -> alt.Chart:
    """The input as coloured tiles, wrapped into rows, one tile per token."""
    frame = pd.DataFrame(
        {
            "index": range(len(tokens)),
            "token": show_tokens(tokens),
            "shown": [short_token(t, 9) for t in tokens],
            "label": list(labels),
        }
    )
    frame["column"] = frame["index"] % per_row
    frame["row"] = frame["index"] // per_row
    rows = int(frame["row"].max()) + 1 if len(frame) else 1
    base = alt.Chart(frame).encode(
        x=alt.X("column:O", axis=None, scale=alt.Scale(paddingInner=0.08)),
        y=alt.Y("row:O", axis=None, scale=alt.Scale(paddingInner=0.15)),
    )
    tiles = base.mark_rect(cornerRadius=4).encode(
        color=alt.Color("label:N", scale=label_scale(), legend=LABEL_LEGEND),
        tooltip=["index:Q", "token:N", "label:N"],
    )
    text = base.mark_text(fontSize=11, color="white", fontWeight="bold").encode(text="shown:N")
    return (tiles + text).properties(
        width=min(per_row, max(len(frame), 1)) * 68, height=rows * 30, title="Tokens, coloured by label"
    )


def token_bars(
    frame: pd.DataFrame,
    field: str,
    title: str,
    threshold: float | None = None,
    threshold_label: str = "",
    learned_sink: float | None = None,
) -> alt.Chart:
    """One bar per token for ``field`` (att_received or value_norm), coloured by label.

    ``learned_sink`` (models with learned sink logits, e.g. gpt-oss) adds a virtual ``<sink>`` bar in
    front: the attention mass that went to no token, drawn hatched-grey so it never reads as a token."""
    order = list(frame["position"])
    if learned_sink is not None:
        order = [SINK_COLUMN, *order]
    x = alt.X("position:N", sort=order, axis=token_axis(len(order)))
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y(f"{field}:Q", title=title_of(field)),
            color=alt.Color("label:N", scale=label_scale(), legend=LABEL_LEGEND),
            tooltip=_token_tooltip(frame),
        )
    )
    layers: list = [bars]
    if learned_sink is not None:
        virtual = pd.DataFrame({"position": [SINK_COLUMN], field: [float(learned_sink)],
                                "what": ["learned sink: attention given to no token (mean over layers, heads, queries)"]})
        layers.append(alt.Chart(virtual).mark_bar(color="#ffffff", stroke=SINK_COLOR, strokeWidth=2,
                                                  strokeDash=[3, 2]).encode(
            x=x, y=f"{field}:Q", tooltip=["what:N", alt.Tooltip(f"{field}:Q", format=".4f")]))
    if threshold is not None:
        rule = alt.Chart(pd.DataFrame({"y": [threshold], "what": [threshold_label]})).mark_rule(
            strokeDash=[5, 4], color="#333"
        ).encode(y="y:Q", tooltip=["what:N", "y:Q"])
        layers.append(rule)
    chart = layers[0] if len(layers) == 1 else alt.layer(*layers)
    return chart.properties(width=alt.Step(_band(len(order))), height=220, title=title)


# ---------------------------------------------------------------- layer x head grids


def head_frame(values: np.ndarray, value_name: str, extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """An [L, H] array as long rows (layer, head, value) plus optional per-cell columns."""
    layers, heads = np.indices(values.shape)
    frame = pd.DataFrame(
        {"layer": layers.ravel(), "head": heads.ravel(), value_name: np.asarray(values, dtype=float).ravel()}
    )
    for name, column in (extra or {}).items():
        frame[name] = np.asarray(column).ravel()
    return frame


def head_grid(
    frame: pd.DataFrame,
    value_name: str,
    title: str,
    selectable: bool = False,
    selected: tuple[int, int] | None = None,
    scheme: str = "viridis",
    domain: tuple[float, float] | None = None,
) -> alt.Chart:
    """A layer x head heatmap (layer 0 at the top). With ``selectable`` a click selects the cell
    (the selection parameter is named ``cell`` and carries the layer and head)."""
    n_layers = int(frame["layer"].nunique())  # rows drawn: a hybrid shows its attention layers only
    n_heads = int(frame["head"].max()) + 1
    cell_w = int(min(36, max(14, 420 // n_heads)))
    cell_h = int(min(30, max(12, 420 // n_layers)))
    scale = alt.Scale(scheme=scheme) if domain is None else alt.Scale(scheme=scheme, domain=list(domain))
    tooltip = [alt.Tooltip(c, format=".3f") if frame[c].dtype.kind == "f" else alt.Tooltip(c) for c in frame]
    chart = (
        alt.Chart(frame)
        .mark_rect(stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X("head:O", title="head", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("layer:O", title="layer"),
            color=alt.Color(f"{value_name}:Q", scale=scale, title=title_of(value_name)),
            tooltip=tooltip,
        )
        .properties(width=n_heads * cell_w, height=n_layers * cell_h, title=title)
    )
    if selectable:
        point = alt.selection_point(name="cell", fields=["layer", "head"], on="click", toggle=False)
        chart = chart.add_params(point)
    if selected is not None:
        marker = pd.DataFrame({"layer": [selected[0]], "head": [selected[1]]})
        ring = alt.Chart(marker).mark_rect(fill=None, stroke="#ff2d95", strokeWidth=3).encode(
            x="head:O", y="layer:O"
        )
        return alt.layer(chart, ring)
    return chart


def difference_grid(base: np.ndarray, other: np.ndarray, metric: str, title: str) -> alt.Chart:
    """other - base per (layer, head) on a diverging scale centred at 0."""
    diff = np.asarray(other, dtype=float) - np.asarray(base, dtype=float)
    limit = float(np.abs(diff).max()) or 1.0
    frame = head_frame(diff, f"Δ {metric}", {"base": base, "other": other})
    return head_grid(frame, f"Δ {metric}", title, scheme="blueorange", domain=(-limit, limit))


# ---------------------------------------------------------------- comparing runs


def compare_bars(frames: Sequence[tuple[str, pd.DataFrame]], field: str = "att_received") -> alt.VConcatChart:
    """One bar chart per run, stacked, on one value scale. Runs of equal length share the pixels per
    position, so positions line up; unequal lengths each get their own width (a 15-token run next to
    a 366-token one stays readable instead of being squeezed to the long run's step)."""
    lengths = {len(frame) for _, frame in frames}
    top = max(float(frame[field].max()) for _, frame in frames) * 1.05 or 1.0
    charts = [
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("position:N", sort=list(frame["position"]), axis=token_axis(len(frame))),
            # One square-root scale for every run: shares of a 400-token run are ~25x smaller than a 15-token
            # run's, and on a linear scale only its token 0 would show.
            y=alt.Y(f"{field}:Q", scale=alt.Scale(type="sqrt", domain=[0, top]), title=f"{title_of(field)}, √ scale"),
            color=alt.Color("label:N", scale=label_scale(), legend=LABEL_LEGEND),
            tooltip=_token_tooltip(frame),
        )
        .properties(width=alt.Step(band(len(frame), target=900, low=2)), height=150, title=name)
        for name, frame in frames
    ]
    how = "aligned by position" if len(lengths) == 1 else "each run at its own width (lengths differ)"
    return alt.vconcat(*charts).properties(title=f"{title_of(field)} per token, {how}")


# ---------------------------------------------------------------- corpora


def corpus_sink_grid(sink_rate: np.ndarray, mean_top_alpha: np.ndarray, epsilon: float, n_inputs: int) -> alt.Chart:
    """Per-(layer, head) sink rate over a corpus: the fraction of inputs in which the head has a token
    with α > ε, on a fixed 0..1 scale so corpora compare by eye."""
    frame = head_frame(sink_rate, "sink_rate", {"mean_top_alpha": mean_top_alpha})
    return head_grid(frame, "sink_rate", f"Sink rate per head over {n_inputs} inputs (α > {epsilon:g})",
                     scheme="viridis", domain=(0.0, 1.0))


def sink_token_bars(types: pd.DataFrame) -> alt.Chart:
    """How often each token type sinks (bars, most frequent on top), coloured by its mean value norm
    when sinking: dark bars are high-attention, low-norm sinks."""
    order = list(types["token"])
    return (
        alt.Chart(types)
        .mark_bar()
        .encode(
            y=alt.Y("token:N", sort=order, title="token type", axis=alt.Axis(labelLimit=140, labelOverlap=False)),
            x=alt.X("sinks:Q", title="occurrences that sink"),
            color=alt.Color("mean_value_norm:Q", scale=alt.Scale(scheme="viridis", domain=[0, 1]),
                            title="mean value norm"),
            tooltip=["token:N", "sinks:Q", "occurrences:Q", "inputs:Q",
                     alt.Tooltip("mean_sink_rate:Q", format=".3f"), alt.Tooltip("mean_value_norm:Q", format=".3f")],
        )
        .properties(width=360, height=alt.Step(18), title="Token types that sink most often")
    )


# The map and plane builders live in their own modules; pages keep calling them through ``charts``.
from .maps import (  # noqa: E402,F401
    RASTER_ABOVE, attention_change, attention_map, attention_pair, layer_curves, raster_map, token_heatmap,
)
from .plane import classification_plane, label_layout  # noqa: E402,F401
