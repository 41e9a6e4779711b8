"""Pure chart builders: plain data in, ``alt.Chart`` out. No Streamlit here, so tests need no browser.

Token strings are user data. Vega draws them as SVG/canvas text and its tooltip escapes HTML,
so they never reach the page as markup.
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from .tokens import SINK_COLUMN, position_labels, show_token, show_tokens

LABELS = ("beneficial", "detrimental", "neutral")
LABEL_COLORS = ("#1a9850", "#d73027", "#9e9e9e")
LABEL_LEGEND = alt.Legend(title="label", orient="top")
TOKEN_LABEL_CHARS = 12
SINK_COLOR = "#6a51a3"  # the learned-sink virtual column: outlined, dashed, never a label colour


def token_axis(n: int, title: str | None = None) -> alt.Axis:
    """Rotated token labels. Above 40 tokens Vega drops overlapping labels ("greedy") so the rest stay readable."""
    return alt.Axis(labelAngle=-60, labelLimit=110, labelOverlap="greedy" if n > 40 else False, title=title)


def label_scale() -> alt.Scale:
    return alt.Scale(domain=list(LABELS), range=list(LABEL_COLORS))


def short_token(token: str, limit: int = TOKEN_LABEL_CHARS) -> str:
    """A token as chart labels show it: the one display of ``dashboard.tokens``, cut with …"""
    return show_token(token, limit)


def token_axis_labels(tokens: Sequence[str]) -> list[str]:
    """"3 ␣the": the position makes repeated tokens ([MASK] [MASK]) distinct categories on an axis."""
    return position_labels(tokens, TOKEN_LABEL_CHARS)


def _band(n: int, target: int = 780, low: int = 1, high: int = 30) -> int:
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
            y=alt.Y(f"{field}:Q", title=field),
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


def classification_plane(frame: pd.DataFrame, tau_att: float, tau_norm: float) -> alt.LayerChart:
    """att_received against value_norm. The shaded corner is the seed rule's "detrimental" region."""
    # att_received is a softmax average, so it is > 0: a log axis spreads the crowd of ordinary tokens
    # apart from the few large sinks. The right margin leaves room for the point labels.
    x_min = max(min(float(frame["att_received"].min()), tau_att if tau_att > 0 else 1.0), 1e-6) * 0.8
    x_max = max(float(frame["att_received"].max()), tau_att) * 1.6
    x_scale = alt.Scale(type="log", domain=[x_min, x_max], nice=False)
    y_scale = alt.Scale(domain=[0, 1.05], nice=False)
    edge = max(tau_att, x_min)  # tau_att = 0 sits at the left edge of a log axis
    region = alt.Chart(pd.DataFrame({"x": [edge], "x2": [x_max], "y": [0.0], "y2": [tau_norm]})).mark_rect(
        color="#d73027", opacity=0.08
    ).encode(x=alt.X("x:Q", scale=x_scale), x2="x2:Q", y=alt.Y("y:Q", scale=y_scale), y2="y2:Q")
    rules = pd.DataFrame(
        {"value": [edge, tau_norm], "rule": [f"τ_att = {tau_att:g}", f"τ_norm = {tau_norm:g}"]}
    )
    v_rule = alt.Chart(rules.iloc[[0]]).mark_rule(strokeDash=[5, 4], color="#333").encode(
        x=alt.X("value:Q", scale=x_scale), tooltip=["rule:N"]
    )
    h_rule = alt.Chart(rules.iloc[[1]]).mark_rule(strokeDash=[5, 4], color="#333").encode(
        y=alt.Y("value:Q", scale=y_scale), tooltip=["rule:N"]
    )
    base = alt.Chart(frame).encode(
        x=alt.X("att_received:Q", scale=x_scale, title="att_received (share of all attention, log scale)"),
        y=alt.Y("value_norm:Q", scale=y_scale, title="value_norm (÷ max over tokens)"),
    )
    points = base.mark_circle(size=90 if len(frame) <= 60 else 35, opacity=0.85).encode(
        color=alt.Color("label:N", scale=label_scale(), legend=LABEL_LEGEND), tooltip=_token_tooltip(frame)
    )
    names = alt.Chart(_labelled_points(frame)).mark_text(align="left", dx=7, dy=-6, fontSize=11).encode(
        x=alt.X("att_received:Q", scale=x_scale), y=alt.Y("value_norm:Q", scale=y_scale), text="position:N"
    )
    return alt.layer(region, v_rule, h_rule, points, names).properties(
        width=440, height=340, title="Classification plane: detrimental = right of τ_att and below τ_norm"
    )


def _labelled_points(frame: pd.DataFrame, top: int = 3, sink_rate: float = 0.5) -> pd.DataFrame:
    """The points that matter get a name: beneficial and detrimental tokens, the ``top`` largest by
    att_received, and tokens that sink in at least ``sink_rate`` of the heads. The crowd of ordinary
    tokens is left to the tooltip, so the names that are drawn can be read."""
    keep = frame["label"] != "neutral"
    keep |= frame["index"].isin(frame.nlargest(top, "att_received")["index"])
    if "sink_rate" in frame:
        keep |= frame["sink_rate"] >= sink_rate
    return frame[keep]


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
    n_layers = int(frame["layer"].max()) + 1
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
            color=alt.Color(f"{value_name}:Q", scale=scale, title=value_name),
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


# ---------------------------------------------------------------- T x T maps


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


def layer_curves(per_layer: np.ndarray, tokens: Sequence[str], top: int = 8) -> alt.Chart:
    """Attention received by each token, layer by layer; only the ``top`` tokens by mean, so lines stay legible."""
    per_layer = np.asarray(per_layer, dtype=float)
    labels = token_axis_labels(tokens)
    keep = sorted(np.argsort(-per_layer.mean(axis=0))[:top].tolist())
    rows = [
        {"layer": layer, "token": labels[j], "att_received": float(per_layer[layer, j])}
        for j in keep
        for layer in range(per_layer.shape[0])
    ]
    frame = pd.DataFrame(rows)
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("layer:O", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("att_received:Q", title="attention received (mean over heads)"),
            color=alt.Color("token:N", sort=[labels[j] for j in keep], legend=alt.Legend(labelLimit=140)),
            tooltip=["token:N", "layer:O", alt.Tooltip("att_received:Q", format=".4f")],
        )
        .properties(width=560, height=300, title=f"Attention received per layer (top {len(keep)} tokens)")
    )


def token_heatmap(values: np.ndarray, tokens: Sequence[str], row_name: str, value_name: str, title: str) -> alt.Chart:
    """Rows (layers or heads) x tokens, e.g. value norms per layer."""
    values = np.asarray(values, dtype=float)
    labels = token_axis_labels(tokens)
    rows, cols = np.indices(values.shape)
    frame = pd.DataFrame(
        {row_name: rows.ravel(), "token": [labels[j] for j in cols.ravel()], value_name: values.ravel()}
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


# ---------------------------------------------------------------- comparing runs


def compare_bars(frames: Sequence[tuple[str, pd.DataFrame]], field: str = "att_received") -> alt.VConcatChart:
    """One bar chart per run, stacked, with the same pixels per position, so positions line up."""
    longest = max(len(frame) for _, frame in frames)
    step = _band(longest)
    top = max(float(frame[field].max()) for _, frame in frames) * 1.05 or 1.0
    charts = [
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("position:N", sort=list(frame["position"]), axis=token_axis(len(frame))),
            y=alt.Y(f"{field}:Q", scale=alt.Scale(domain=[0, top]), title=field),
            color=alt.Color("label:N", scale=label_scale(), legend=LABEL_LEGEND),
            tooltip=_token_tooltip(frame),
        )
        .properties(width=alt.Step(step), height=150, title=name)
        for name, frame in frames
    ]
    return alt.vconcat(*charts).properties(title=f"{field} per token, aligned by position")


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
