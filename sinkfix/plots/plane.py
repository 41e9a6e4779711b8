"""The classification plane: att_received (log x) against value_norm, the seed rule's corner shaded,
and the tokens that matter named with labels placed so that no two overlap.

Vega-Lite has no label-collision layout, so ``label_layout`` places the names here, in pixel space:
each name tries a few spots around its point (right, above-right, below-right, left, ...) and takes the
first that overlaps no earlier name and no labelled point; a name moved off its point gets a thin
leader line. Pure functions, so the no-overlap promise is a test, not a hope.
"""
from __future__ import annotations

import math

import altair as alt
import pandas as pd

from .base import LABEL_LEGEND, _token_tooltip, label_scale

WIDTH, HEIGHT = 440, 340
Y_MAX = 1.05
CHAR_PX = 6.6  # an 11 px sans-serif glyph, generously: a box may be a little wide, never narrow
LINE_PX = 14
POINT_PX = 6
# (dx, dy, align) around the point, nearest first.
SPOTS = [(8, 0, "left"), (8, -LINE_PX, "left"), (8, LINE_PX, "left"), (-8, 0, "right"), (-8, -LINE_PX, "right"),
         (-8, LINE_PX, "right"), *[(sx, k * sy * LINE_PX, al) for k in (2, 3, 4) for sy in (-1, 1)
                                   for sx, al in ((8, "left"), (-8, "right"))]]


def x_domain(frame: pd.DataFrame, tau_att: float) -> tuple[float, float]:
    """att_received is a softmax average, so it is > 0: a log axis spreads the ordinary tokens apart from
    the few large sinks. The right margin leaves room for names."""
    x_min = max(min(float(frame["att_received"].min()), tau_att if tau_att > 0 else 1.0), 1e-6) * 0.8
    x_max = max(float(frame["att_received"].max()), tau_att) * 1.6
    return x_min, x_max


def labelled_points(frame: pd.DataFrame, top: int = 3, sink_rate: float = 0.5) -> pd.DataFrame:
    """The points that get a name: beneficial and detrimental tokens, the ``top`` largest by att_received,
    and tokens that sink in at least ``sink_rate`` of the heads; the rest are left to the tooltip."""
    keep = frame["label"] != "neutral"
    keep |= frame["index"].isin(frame.nlargest(top, "att_received")["index"])
    if "sink_rate" in frame:
        keep |= frame["sink_rate"] >= sink_rate
    return frame[keep]


def _pixels(x: float, y: float, domain: tuple[float, float]) -> tuple[float, float]:
    low, high = math.log(domain[0]), math.log(domain[1])
    return WIDTH * (math.log(max(x, domain[0])) - low) / (high - low), HEIGHT * (1 - y / Y_MAX)


def _data(px: float, py: float, domain: tuple[float, float]) -> tuple[float, float]:
    low, high = math.log(domain[0]), math.log(domain[1])
    return math.exp(low + px / WIDTH * (high - low)), Y_MAX * (1 - py / HEIGHT)


def _box(ax: float, ay: float, width: float, align: str) -> tuple[float, float, float, float]:
    left = ax if align == "left" else ax - width
    return left, ay - LINE_PX / 2, left + width, ay + LINE_PX / 2


def _overlap(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def label_layout(frame: pd.DataFrame, tau_att: float) -> pd.DataFrame:
    """One row per named point: its text, the point (att_received, value_norm), where its name goes in
    data units (label_x, label_y) and pixels (box: x0, y0, x1, y1), and the text alignment."""
    domain = x_domain(frame, tau_att)
    points = labelled_points(frame)
    # Important names first: a detrimental token keeps the spot nearest its point.
    order = points.assign(rank=(points["label"] == "neutral").astype(int)).sort_values(
        ["rank", "att_received"], ascending=[True, False])
    centres = [_pixels(r.att_received, r.value_norm, domain) for r in order.itertuples()]
    marks = [(x - POINT_PX, y - POINT_PX, x + POINT_PX, y + POINT_PX) for x, y in centres]
    placed: list[tuple] = []
    rows = []
    for row, (px, py) in zip(order.itertuples(), centres):
        width = CHAR_PX * len(str(row.position))
        best, best_cost = None, math.inf
        for dx, dy, align in SPOTS:
            box = _box(px + dx, py + dy, width, align)
            outside = box[0] < -4 or box[2] > WIDTH + 40 or box[1] < -LINE_PX or box[3] > HEIGHT
            cost = sum(_overlap(box, other) for other in placed)
            cost += sum(_overlap(box, m) for m in marks if m != (px - POINT_PX, py - POINT_PX, px + POINT_PX, py + POINT_PX))
            cost += 1e6 if outside else 0.0
            if cost < best_cost:
                best, best_cost = (box, dx, dy, align), cost
            if cost == 0:
                break
        box, dx, dy, align = best
        placed.append(box)
        label_x, label_y = _data(px + dx, py + dy, domain)
        rows.append({"position": row.position, "att_received": row.att_received, "value_norm": row.value_norm,
                     "label_x": label_x, "label_y": label_y, "align": align, "moved": dy != 0,
                     "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3]})
    return pd.DataFrame(rows, columns=["position", "att_received", "value_norm", "label_x", "label_y", "align",
                                       "moved", "x0", "y0", "x1", "y1"])


def classification_plane(frame: pd.DataFrame, tau_att: float, tau_norm: float) -> alt.LayerChart:
    """att_received against value_norm. The shaded corner is the seed rule's "detrimental" region."""
    x_min, x_max = x_domain(frame, tau_att)
    x_scale = alt.Scale(type="log", domain=[x_min, x_max], nice=False)
    y_scale = alt.Scale(domain=[0, Y_MAX], nice=False)
    edge = max(tau_att, x_min)  # tau_att = 0 sits at the left edge of a log axis
    region = alt.Chart(pd.DataFrame({"x": [edge], "x2": [x_max], "y": [0.0], "y2": [tau_norm]})).mark_rect(
        color="#d73027", opacity=0.08
    ).encode(x=alt.X("x:Q", scale=x_scale), x2="x2:Q", y=alt.Y("y:Q", scale=y_scale), y2="y2:Q")
    rules = pd.DataFrame({"value": [edge, tau_norm], "rule": [f"τ_att = {tau_att:g}", f"τ_norm = {tau_norm:g}"]})
    v_rule = alt.Chart(rules.iloc[[0]]).mark_rule(strokeDash=[5, 4], color="#333").encode(
        x=alt.X("value:Q", scale=x_scale), tooltip=["rule:N"])
    h_rule = alt.Chart(rules.iloc[[1]]).mark_rule(strokeDash=[5, 4], color="#333").encode(
        y=alt.Y("value:Q", scale=y_scale), tooltip=["rule:N"])
    base = alt.Chart(frame).encode(
        x=alt.X("att_received:Q", scale=x_scale, title="att_received (share of all attention, log scale)"),
        y=alt.Y("value_norm:Q", scale=y_scale, title="value_norm (÷ max over tokens)"),
    )
    points = base.mark_circle(size=90 if len(frame) <= 60 else 35, opacity=0.85).encode(
        color=alt.Color("label:N", scale=label_scale(), legend=LABEL_LEGEND), tooltip=_token_tooltip(frame))
    layout = label_layout(frame, tau_att)
    leaders = alt.Chart(layout[layout["moved"]]).mark_rule(color="#888", strokeWidth=0.7).encode(
        x=alt.X("att_received:Q", scale=x_scale), y=alt.Y("value_norm:Q", scale=y_scale), x2="label_x:Q",
        y2="label_y:Q")
    names = [alt.Chart(layout[layout["align"] == align]).mark_text(align=align, baseline="middle", fontSize=11)
             .encode(x=alt.X("label_x:Q", scale=x_scale), y=alt.Y("label_y:Q", scale=y_scale), text="position:N")
             for align in ("left", "right")]
    return alt.layer(region, v_rule, h_rule, leaders, points, *names).properties(
        width=WIDTH, height=HEIGHT, title="Classification plane: detrimental = right of τ_att and below τ_norm")
