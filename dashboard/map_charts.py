"""Pure chart builders for attention maps (T x T, one head or the mean) and per-layer token views.

Split out of ``charts.py`` (which re-exports these names). Token strings are user data: they are
axis categories and tooltip values, never spliced into a Vega expression.
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from .chart_base import _band, title_of, token_axis, token_axis_labels


def attention_map(
    matrix: np.ndarray,
    tokens: Sequence[str],
    title: str,
    domain: tuple[float, float] | None = None,
    scheme: str = "redblue",
    value_name: str = "attention",
) -> alt.Chart:
    """A T x T attention map: rows are queries, columns are keys, both labelled by token."""
    labels = token_axis_labels(tokens)
    n = len(labels)
    query, key = np.indices((n, n))
    frame = pd.DataFrame(
        {
            "query": [labels[i] for i in query.ravel()],
            "key": [labels[j] for j in key.ravel()],
            value_name: np.asarray(matrix, dtype=float).ravel(),
        }
    )
    side = min(320, max(200, n * 20))  # two maps side by side fit a ~900 px wide page
    domain = domain or (0.0, float(frame[value_name].max()) or 1.0)
    return (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=alt.X("key:N", sort=labels, axis=token_axis(n, "key (attended to)")),
            y=alt.Y("query:N", sort=labels, axis=alt.Axis(labelLimit=110, labelOverlap="greedy" if n > 40 else False), title="query"),
            color=alt.Color(f"{value_name}:Q", scale=_map_scale(scheme, domain), title=value_name),
            tooltip=["query:N", "key:N", alt.Tooltip(f"{value_name}:Q", format=".4f")],
        )
        .properties(width=side, height=side, title=title)
    )


def _map_scale(scheme: str, domain: tuple[float, float]) -> alt.Scale:
    """Attention: white at 0 and a square-root ramp, so structure outside a dominant sink column stays
    visible. Signed changes: the given diverging scheme, linear and centred on 0."""
    if domain[0] >= 0:
        return alt.Scale(type="sqrt", domain=list(domain), range=["#ffffff", "#08306b"], interpolate="hcl")
    return alt.Scale(scheme=scheme, domain=list(domain))


def attention_pair(original: np.ndarray, corrected: np.ndarray, tokens: Sequence[str], title: str) -> alt.HConcatChart:
    """Original beside corrected on one colour scale, so the moved mass is visible."""
    top = float(max(np.max(original), np.max(corrected))) or 1.0
    return alt.hconcat(
        attention_map(original, tokens, "original", (0, top)),
        attention_map(corrected, tokens, "corrected (sinks redistributed)", (0, top)),
    ).properties(title=title).resolve_scale(color="shared")


def attention_change(original: np.ndarray, corrected: np.ndarray, tokens: Sequence[str], title: str) -> alt.Chart:
    """corrected - original on a diverging scale: where the correction took attention from and gave it to."""
    change = np.asarray(corrected, dtype=float) - np.asarray(original, dtype=float)
    limit = float(np.abs(change).max()) or 1.0
    return attention_map(change, tokens, title, domain=(-limit, limit), scheme="redblue", value_name="change")


# ---------------------------------------------------------------- per layer


def layer_curves(per_layer: np.ndarray, tokens: Sequence[str], top: int = 8, layers: Sequence[int] | None = None,
                 n_layers: int | None = None) -> alt.Chart | alt.LayerChart:
    """Attention received by each token, layer by layer; only the ``top`` tokens by mean, so lines stay legible.

    ``layers``: the model layer number of each row (a hybrid's attention layers); the model's other
    layers (up to ``n_layers``) are kept on the axis and marked by grey rules, never drawn as attention.
    """
    per_layer = np.asarray(per_layer, dtype=float)
    labels = token_axis_labels(tokens)
    numbers = list(range(per_layer.shape[0])) if layers is None else [int(n) for n in layers]
    keep = sorted(np.argsort(-per_layer.mean(axis=0))[:top].tolist())
    rows = [
        {"layer": numbers[row], "token": labels[j], "att_received": float(per_layer[row, j])}
        for j in keep
        for row in range(per_layer.shape[0])
    ]
    frame = pd.DataFrame(rows)
    depth = max(numbers) + 1 if n_layers is None else n_layers
    others = [layer for layer in range(depth) if layer not in numbers]
    x = alt.X("layer:O", axis=alt.Axis(labelAngle=0), scale=alt.Scale(domain=list(range(depth))))
    curves = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("att_received:Q", title="attention received (mean over heads)"),
            color=alt.Color("token:N", sort=[labels[j] for j in keep], legend=alt.Legend(labelLimit=140)),
            tooltip=["token:N", "layer:O", alt.Tooltip("att_received:Q", format=".4f")],
        )
        .properties(width=560, height=300, title=f"Attention received per layer (top {len(keep)} tokens)")
    )
    if not others:
        return curves
    marks = pd.DataFrame({"layer": others, "kind": "not attention (linear attention, state space or convolution)"})
    rules = alt.Chart(marks).mark_rule(color="#bbbbbb", strokeDash=[4, 3]).encode(x=x, tooltip=["layer:O", "kind:N"])
    return alt.layer(rules, curves)


def token_heatmap(values: np.ndarray, tokens: Sequence[str], row_name: str, value_name: str, title: str,
                  row_labels: Sequence[int] | None = None) -> alt.Chart:
    """Rows (layers or heads) x tokens, e.g. value norms per layer; ``row_labels`` names the rows
    (a hybrid's model layer numbers), else they are numbered from 0."""
    values = np.asarray(values, dtype=float)
    labels = token_axis_labels(tokens)
    rows, cols = np.indices(values.shape)
    names = np.arange(values.shape[0]) if row_labels is None else np.asarray(list(row_labels))
    frame = pd.DataFrame(
        {row_name: names[rows.ravel()], "token": [labels[j] for j in cols.ravel()], value_name: values.ravel()}
    )
    return (
        alt.Chart(frame)
        .mark_rect()
        .encode(
            x=alt.X("token:N", sort=labels, axis=token_axis(len(labels))),
            y=alt.Y(f"{row_name}:O"),
            color=alt.Color(f"{value_name}:Q", scale=alt.Scale(scheme="viridis"), title=value_name),
            tooltip=[f"{row_name}:O", "token:N", alt.Tooltip(f"{value_name}:Q", format=".3f")],
        )
        .properties(
            width=alt.Step(_band(len(labels))), height=min(360, max(90, values.shape[0] * 18)), title=title
        )
    )


