"""The layer profile as one chart: four panels stacked on one shared layer axis (token 0's norm beside the
median token's, the sink rate, token 0's α, the representation entropy), each line with its 95% CI band,
and the layers where the curves change together shaded in every panel. Pure builders (data -> chart).
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

COLUMNS = ["panel", "series", "x", "mean", "low", "high", "n"]
# (panel title, [(metric key, series name)], log scale)
PANELS = (
    ("hidden-state norm", [("token0_norm", "token 0"), ("median_norm", "median token")], True),
    ("sink rate (share of heads, α > ε)", [("sink_rate", "sink rate")], False),
    ("token 0's α (mean over heads)", [("token0_alpha", "token 0's α")], False),
    ("representation entropy (nats)", [("repr_entropy", "entropy")], False),
)
COLORS = {"token 0": "#b2182b", "median token": "#777777", "sink rate": "#2166ac", "token 0's α": "#5e3c99",
          "entropy": "#1b7837"}
WIDTH, HEIGHT = 560, 120


def estimate_rows(entries: Sequence[tuple[float, dict | None]], panel: str, series: str) -> list[dict]:
    """Rows of the long frame from (x, {"mean", "ci95", "n"}) pairs; a missing CI leaves low/high empty."""
    rows = []
    for x, entry in entries:
        if entry is None or entry.get("mean") is None:
            continue
        ci = entry.get("ci95")
        rows.append({"panel": panel, "series": series, "x": x, "mean": float(entry["mean"]),
                     "low": None if ci is None else float(ci[0]), "high": None if ci is None else float(ci[1]),
                     "n": entry.get("n")})
    return rows


def profile_frame(result: dict) -> pd.DataFrame:
    """One row per (panel, series, layer) with the mean and its CI."""
    rows = []
    for panel, series, _ in PANELS:
        for key, name in series:
            rows += estimate_rows([(row["layer"], row.get(key)) for row in result["layers"]], panel, name)
    return pd.DataFrame(rows, columns=COLUMNS)


def band_panel(frame: pd.DataFrame, panel: str, x: alt.X, log: bool, colors: dict[str, str],
               width: int = WIDTH, height: int = HEIGHT) -> alt.LayerChart:
    """One panel: a line per series with its CI band (rows without a CI draw the line only)."""
    data = frame[frame["panel"] == panel]
    names = list(dict.fromkeys(data["series"]))
    color = alt.Color("series:N", scale=alt.Scale(domain=names, range=[colors.get(s, "#444444") for s in names]),
                      legend=alt.Legend(title=None, orient="right"))
    y_scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    base = alt.Chart(data).encode(x=x, color=color)
    band = base.transform_filter("isValid(datum.low)").mark_area(opacity=0.22).encode(
        y=alt.Y("low:Q", scale=y_scale, title=panel), y2="high:Q")
    line = base.mark_line(point=alt.OverlayMarkDef(size=18)).encode(
        y=alt.Y("mean:Q", scale=y_scale, title=panel),
        tooltip=["series", alt.Tooltip("x:Q", title="x"), alt.Tooltip("mean:Q", format=".4g"),
                 alt.Tooltip("low:Q", format=".4g"), alt.Tooltip("high:Q", format=".4g"), "n"])
    return (band + line).properties(width=width, height=height)


def _spans(result: dict) -> pd.DataFrame:
    spans = (result.get("together") or {}).get("spans") or []
    return pd.DataFrame([{"start": a - 0.5, "end": b + 0.5} for a, b in spans], columns=["start", "end"])


def profile_chart(result: dict) -> alt.VConcatChart:
    """Four panels over one layer axis; grey bands mark the layers where the three change together."""
    frame = profile_frame(result)
    n_layers = len(result["layers"])
    scale = alt.Scale(domain=[-0.5, n_layers - 0.5], nice=False)
    spans = _spans(result)
    panels = []
    for index, (panel, _, log) in enumerate(PANELS):
        last = index == len(PANELS) - 1  # one labelled layer axis, at the bottom; the others align to it
        x = alt.X("x:Q", scale=scale, title="layer (output of decoder layer l)" if last else None,
                  axis=alt.Axis(tickMinStep=1, format="d", labels=last))
        chart = band_panel(frame, panel, x, log, COLORS)
        if len(spans):
            shade = alt.Chart(spans).mark_rect(color="#999999", opacity=0.18).encode(x="start:Q", x2="end:Q")
            chart = alt.layer(shade, chart)
        panels.append(chart)
    n = result.get("n_texts")
    unit = "text" if result.get("source", "text") == "text" else "window"  # a corpus is cut into windows
    title = f"Layer profile · {result.get('model', '')} · n = {n} {unit}{'s' if n != 1 else ''} · 95% CI over {unit}s"
    return alt.vconcat(*panels, spacing=8).resolve_scale(x="shared", color="independent").properties(title=title)
