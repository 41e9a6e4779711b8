"""Pure chart builders for attention maps (T x T, one head or the mean) and per-layer token views.

Split out of ``charts.py`` (which re-exports these names). Token strings are user data: they are
axis categories and tooltip values, never spliced into a Vega expression.
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from .base import _band, token_axis, token_axis_labels


def attention_map(
    matrix: np.ndarray,
    tokens: Sequence[str],
    title: str,
    domain: tuple[float, float] | None = None,
    scheme: str = "redblue",
    value_name: str = "attention",
) -> alt.Chart:
    """A T x T attention map: rows are queries, columns are keys, both labelled by token. Above
    ``RASTER_ABOVE`` tokens it is one image (see ``raster_map``): T² rectangles would take seconds to draw."""
    if len(tokens) > RASTER_ABOVE:
        return raster_map(matrix, title, domain, value_name)
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


RASTER_ABOVE = 64  # tokens; a 256-token map is 65,536 cells, three maps ~200k SVG marks per head change
POSITIVE = ((255, 255, 255), (8, 48, 107))  # white to dark blue, on a square-root ramp
DIVERGING = ((103, 0, 31), (247, 247, 247), (5, 48, 97))  # Vega's redblue ends: red < 0 < blue


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def map_colours(matrix: np.ndarray, domain: tuple[float, float]) -> np.ndarray:
    """[T, T, 3] uint8 colours: attention on the square-root white-to-blue ramp, signed changes on a
    linear red-white-blue ramp centred on 0 (the legends beside the image use the same ramps)."""
    values = np.asarray(matrix, dtype=np.float64)
    low, high = domain
    if low >= 0:
        t = np.sqrt(np.clip((values - low) / ((high - low) or 1.0), 0.0, 1.0))[..., None]
        start, end = (np.array(c, dtype=np.float64) for c in POSITIVE)
        return (start + (end - start) * t).round().astype(np.uint8)
    t = np.clip(values / (high or 1.0), -1.0, 1.0)[..., None]  # -1..1
    red, white, blue = (np.array(c, dtype=np.float64) for c in DIVERGING)
    out = np.where(t < 0, white + (red - white) * -t, white + (blue - white) * t)
    return out.round().astype(np.uint8)


def png_data_url(colours: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(colours, "RGB").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def raster_map(matrix: np.ndarray, title: str, domain: tuple[float, float] | None = None,
               value_name: str = "attention") -> alt.LayerChart:
    """A long map as one PNG image on position axes (0 at the top left), with its colour legend. Token
    names are not on the axes here (at 256 tokens they could not be read anyway): positions are."""
    values = np.asarray(matrix, dtype=float)
    n = values.shape[0]
    domain = domain or (0.0, float(values.max()) or 1.0)
    image = pd.DataFrame({"x": [0], "x2": [n], "y": [0], "y2": [n], "url": [png_data_url(map_colours(values, domain))]})
    x = alt.X("x:Q", title="key (attended to), position", scale=alt.Scale(domain=[0, n], nice=False))
    y = alt.Y("y:Q", title="query, position", scale=alt.Scale(domain=[0, n], reverse=True, nice=False))
    picture = alt.Chart(image).mark_image(aspect=False, smooth=False).encode(x=x, x2="x2:Q", y=y, y2="y2:Q",
                                                                             url="url:N")
    legend = pd.DataFrame({value_name: list(domain), "x": [0, 0], "y": [0, 0]})
    # The legend's ramps are the image's own (map_colours), so a colour reads the same in both.
    scale = (alt.Scale(type="sqrt", domain=list(domain), range=[_hex(c) for c in POSITIVE], interpolate="rgb")
             if domain[0] >= 0 else alt.Scale(domain=[domain[0], 0, domain[1]], range=[_hex(c) for c in DIVERGING]))
    key = alt.Chart(legend).mark_point(opacity=0).encode(x="x:Q", y="y:Q", color=alt.Color(
        f"{value_name}:Q", scale=scale, title=value_name))
    return alt.layer(picture, key).properties(width=320, height=320, title=title)


def _map_scale(scheme: str, domain: tuple[float, float]) -> alt.Scale:
    """Attention: white at 0 and a square-root ramp, so structure outside a dominant sink column stays
    visible. Signed changes: the given diverging scheme, linear and centred on 0."""
    if domain[0] >= 0:
        return alt.Scale(type="sqrt", domain=list(domain), range=[_hex(c) for c in POSITIVE], interpolate="hcl")
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


