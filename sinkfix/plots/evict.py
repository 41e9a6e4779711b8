"""Charts of the KV-cache eviction sweep: pure functions from a stored result (its JSON) to altair.

- ``accuracy_chart``: accuracy (or the NLL change) against the ratio, one panel per press, protection
  as the line style, 95% intervals as bands, dense at ratio 0;
- ``needle_heatmap``: accuracy over depth x length for one press, ratio and protection;
- ``paired_forest``: every paired difference between protections with its interval;
- ``kept_strip``: for the stored example prompt, which keys one press kept, layer x position, per KV
  head, with the detected sinks and the needle marked.
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from sinkfix.experiments.evict.view import unpack
from sinkfix.plots.maps import png_data_url

DASHES = {"none": [1, 0], "detected": [6, 3]}  # first:N gets [2, 2]
DENSE = "dense"
# kept strip colours: evicted, kept, a detected sink kept, a detected sink evicted
EVICTED, KEPT, SINK_KEPT, SINK_EVICTED = (240, 240, 240), (49, 130, 189), (230, 120, 0), (215, 25, 28)


def _nll(result: dict) -> bool:
    return result.get("metric") == "nll"


def accuracy_frame(result: dict) -> pd.DataFrame:
    """One row per (press, ratio, protection), plus ratio 0 (the dense cache) for every line."""
    field = "nll_delta" if _nll(result) else "accuracy"
    dense = result["dense"]
    rows = []
    for press, by_ratio in result["results"].items():
        for protect in next(iter(by_ratio.values())):
            if _nll(result):
                rows.append({"press": press, "ratio": 0.0, "protection": protect, "value": 0.0, "low": 0.0, "high": 0.0})
            else:
                low, high = dense["accuracy"]["ci95"]
                rows.append({"press": press, "ratio": 0.0, "protection": protect, "value": dense["accuracy"]["mean"],
                             "low": low, "high": high})
            for ratio, by_protect in by_ratio.items():
                cell = by_protect[protect][field]
                rows.append({"press": press, "ratio": float(ratio), "protection": protect, "value": cell["mean"],
                             "low": cell["ci95"][0], "high": cell["ci95"][1]})
    return pd.DataFrame(rows, columns=["press", "ratio", "protection", "value", "low", "high"])


def _dash_scale(protections: Sequence[str]) -> alt.Scale:
    return alt.Scale(domain=list(protections), range=[DASHES.get(p, [2, 2]) for p in protections])


def accuracy_chart(result: dict) -> alt.FacetChart:
    """Accuracy (the ppl task: ΔNLL) against the ratio removed, a panel per press."""
    frame = accuracy_frame(result)
    protections = list(dict.fromkeys(frame["protection"]))
    title = "NLL change vs dense (nats)" if _nll(result) else "accuracy (exact answers)"
    x = alt.X("ratio:Q", title="ratio removed (0 = dense)", scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("value:Q", title=title, scale=alt.Scale(zero=True) if _nll(result) else alt.Scale(domain=[0, 1]))
    colour = alt.Color("protection:N", title="protection", scale=alt.Scale(domain=protections),
                       legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=2, symbolSize=300))
    base = alt.Chart(frame)
    # The band's fill reads a copy of the field: the same colours, and no legend merged into the lines' one.
    band = base.transform_calculate(band="datum.protection").mark_area(opacity=0.15).encode(
        x=x, y=alt.Y("low:Q", title=title), y2="high:Q",
        fill=alt.Fill("band:N", scale=alt.Scale(domain=protections), legend=None))
    line = base.mark_line(point=True).encode(
        x=x, y=y, color=colour, strokeDash=alt.StrokeDash("protection:N", scale=_dash_scale(protections)),
        tooltip=["press", "protection", alt.Tooltip("ratio:Q", format="g"), alt.Tooltip("value:Q", format=".3f"),
                 alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f")])
    return alt.layer(band, line).properties(width=180, height=150).facet(
        facet=alt.Facet("press:N", title=None, sort=list(result["results"])), columns=4)


def heatmap_frame(result: dict, press: str, ratio: str, protect: str) -> pd.DataFrame:
    """Accuracy per (length, depth) cell over the seeds; ``press`` "dense" reads the dense cache."""
    rows: dict[tuple[int, float], list[bool]] = {}
    for prompt in result["prompts"]:
        outcome = prompt["dense"] if press == DENSE else prompt["outcomes"][press][ratio][protect]
        rows.setdefault((prompt["length"], prompt["depth"]), []).append(bool(outcome["correct"]))
    return pd.DataFrame([{"length": length, "depth": depth, "accuracy": float(np.mean(hits)),
                          "label": f"{sum(hits)}/{len(hits)}"} for (length, depth), hits in sorted(rows.items())],
                        columns=["length", "depth", "accuracy", "label"])


def needle_heatmap(result: dict, press: str, ratio: str, protect: str) -> alt.LayerChart:
    """Depth x length, coloured by accuracy, each cell labelled hits/seeds."""
    frame = heatmap_frame(result, press, ratio, protect)
    x = alt.X("length:O", title="context length (tokens)")
    y = alt.Y("depth:O", title="needle depth (fraction of the context)", sort="ascending")
    cells = alt.Chart(frame).mark_rect().encode(
        x=x, y=y, color=alt.Color("accuracy:Q", scale=alt.Scale(domain=[0, 1], scheme="redyellowgreen"),
                                  title="accuracy"),
        tooltip=["length:O", "depth:O", alt.Tooltip("accuracy:Q", format=".2f"), "label:N"])
    text = alt.Chart(frame).mark_text(fontSize=13).encode(x=x, y=y, text="label:N")
    name = "dense cache" if press == DENSE else f"{press}, ratio {ratio}, {protect}"
    return alt.layer(cells, text).properties(width=max(160, 90 * frame["length"].nunique()), height=220, title=name)


def forest_frame(result: dict) -> pd.DataFrame:
    rows = []
    for press, by_ratio in result["paired"].items():
        for ratio, by_pair in by_ratio.items():
            for pair, cell in by_pair.items():
                if cell["mean"] is None:
                    continue
                rows.append({"setting": f"{press} @ {ratio}", "press": press, "ratio": ratio, "comparison": pair,
                             "mean": cell["mean"], "low": cell["ci95"][0], "high": cell["ci95"][1], "n": cell["n"]})
    return pd.DataFrame(rows, columns=["setting", "press", "ratio", "comparison", "mean", "low", "high", "n"])


def paired_forest(result: dict) -> alt.LayerChart:
    """Each protection minus another, per press and ratio, with its paired-bootstrap 95% interval."""
    frame = forest_frame(result)
    unit = "ΔNLL (nats)" if _nll(result) else "Δ accuracy"
    order = list(dict.fromkeys(frame["setting"]))
    y = alt.Y("setting:N", sort=order, title=None)
    y_offset = alt.YOffset("comparison:N")
    colour = alt.Color("comparison:N", title="difference")
    base = alt.Chart(frame)
    whiskers = base.mark_rule().encode(x=alt.X("low:Q", title=f"{unit}, paired over the same prompts"), x2="high:Q",
                                       y=y, yOffset=y_offset, color=colour)
    points = base.mark_point(filled=True, size=40).encode(
        x="mean:Q", y=y, yOffset=y_offset, color=colour,
        tooltip=["setting", "comparison", alt.Tooltip("mean:Q", format="+.3f"), alt.Tooltip("low:Q", format="+.3f"),
                 alt.Tooltip("high:Q", format="+.3f"), "n:Q"])
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="gray", strokeDash=[4, 4]).encode(x="x:Q")
    return alt.layer(whiskers, points, zero).properties(width=480, height=alt.Step(10))  # a step per difference


def strip_colours(kept: np.ndarray, sinks: np.ndarray) -> np.ndarray:
    """[L, T] kept and sink flags -> [L, T, 3] uint8 colours."""
    out = np.empty((*kept.shape, 3), dtype=np.uint8)
    for flag, colour in (((~kept) & ~sinks, EVICTED), (kept & ~sinks, KEPT), (kept & sinks, SINK_KEPT),
                         ((~kept) & sinks, SINK_EVICTED)):
        out[flag] = colour
    return out


def kept_strip(example: dict, press: str, ratio: str, protect: str, head: int, width: int = 720) -> alt.LayerChart:
    """Layer (rows, 0 at the top) x context position: which keys one press kept in one KV head."""
    kept, sinks = unpack(example, press, ratio, protect)
    layers, _, n = kept.shape
    image = pd.DataFrame({"x": [0], "x2": [n], "y": [0], "y2": [layers],
                          "url": [png_data_url(strip_colours(kept[:, head], sinks[:, head]))]})
    x = alt.X("x:Q", title="context position", scale=alt.Scale(domain=[0, n], nice=False))
    every = max(1, layers // 6)
    y = alt.Y("y:Q", title="layer", scale=alt.Scale(domain=[0, layers], reverse=True, nice=False),
              axis=alt.Axis(values=list(range(0, layers, every)), tickMinStep=1))  # a tick at each row's top edge
    parts = [alt.Chart(image).mark_image(aspect=False, smooth=False).encode(x=x, x2="x2:Q", y=y, y2="y2:Q", url="url:N")]
    if example.get("needle"):
        start, stop = example["needle"]
        needle = pd.DataFrame({"x": [start], "x2": [stop], "y": [0], "y2": [layers], "mark": ["needle"]})
        parts.append(alt.Chart(needle).mark_rect(fill=None, stroke="black", strokeWidth=1.5).encode(
            x="x:Q", x2="x2:Q", y="y:Q", y2="y2:Q", tooltip=["mark:N", "x:Q", "x2:Q"]))
    names = ["evicted", "kept", "sink, kept", "sink, evicted"]
    scale = alt.Scale(domain=names, range=["#%02x%02x%02x" % c for c in (EVICTED, KEPT, SINK_KEPT, SINK_EVICTED)])
    layer, position = np.nonzero(sinks[:, head])
    # A sink is one pixel column of the image at 1,000+ positions: a marker over it keeps it visible.
    marks = pd.DataFrame({"x": position + 0.5, "y": layer + 0.5, "layer": layer, "position": position,
                          "key": ["sink, kept" if kept[l, head, p] else "sink, evicted" for l, p in zip(layer, position)]})
    legend = pd.DataFrame({"x": [0.0] * 4, "y": [0.0] * 4, "layer": [0] * 4, "position": [0] * 4, "key": names})
    parts.append(alt.Chart(pd.concat([legend.assign(shown=0.0), marks.assign(shown=1.0)])).mark_square(size=28).encode(
        x="x:Q", y="y:Q", color=alt.Color("key:N", title="key", scale=scale), opacity=alt.Opacity("shown:Q", legend=None, scale=alt.Scale(domain=[0, 1], range=[0, 1])),
        tooltip=["key:N", "layer:Q", "position:Q"]))
    return alt.layer(*parts).properties(width=width, height=max(60, 3 * layers), title=f"{press}, KV head {head}")


def kept_strips(example: dict, presses: Sequence[str], ratio: str, protect: str, head: int) -> alt.VConcatChart:
    """One strip per press, stacked, for one KV head."""
    return alt.vconcat(*[kept_strip(example, press, ratio, protect, head) for press in presses])
