"""Chart builders for the mechanism experiments: pure functions ``data -> alt.Chart`` (tested without a browser)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import altair as alt
import pandas as pd

from .analysis import short_token, token_axis, token_axis_labels

KINDS = ("natural", "random", "repeated")
SOURCE_COLORS = {"SinkFix": "#2166ac"}
PAPER_COLORS = ("#b2182b", "#ef8a62", "#999999")


def sinkrate_frame(result: dict) -> pd.DataFrame:
    """One row per (source, kind): SinkFix's measured rate with its CI, and each paper model's figure (%)."""
    rows = []
    for kind, rate in result["kinds"].items():
        low, high = rate["ci95"]
        rows.append({"source": f"SinkFix: {result['model']}", "kind": kind, "rate": 100 * rate["rate"],
                     "low": 100 * low, "high": 100 * high})
    for model, rates in result.get("paper", {}).items():
        for kind, value in rates.items():
            if kind in result["kinds"]:
                rows.append({"source": f"paper: {model}", "kind": kind, "rate": value, "low": None, "high": None})
    return pd.DataFrame(rows)


def sinkrate_bars(result: dict) -> alt.LayerChart:
    """Grouped bars per input kind: SinkFix's Sink₁ with 95% CI whiskers beside Gu et al.'s figures."""
    frame = sinkrate_frame(result)
    sources = list(dict.fromkeys(frame["source"]))
    colors = [SOURCE_COLORS["SinkFix"], *PAPER_COLORS][: len(sources)]
    base = alt.Chart(frame).encode(
        x=alt.X("kind:N", sort=list(KINDS), title="input kind"),
        xOffset=alt.XOffset("source:N", sort=sources),
    )
    bars = base.mark_bar().encode(
        y=alt.Y("rate:Q", title="Sink₁^ε, % of (layer, head)", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("source:N", sort=sources, scale=alt.Scale(domain=sources, range=colors),
                        legend=alt.Legend(title=None, orient="top")),
        tooltip=["source", "kind", alt.Tooltip("rate:Q", format=".2f"), alt.Tooltip("low:Q", format=".2f"),
                 alt.Tooltip("high:Q", format=".2f")],
    )
    whiskers = base.transform_filter("isValid(datum.low)").mark_rule(color="black").encode(y="low:Q", y2="high:Q")
    return (bars + whiskers).properties(width=420, height=260,
                                        title=f"Sink rate of token 0, ε = {result['epsilon']}, T = {result['length']}")


def layer_frame(result: dict) -> pd.DataFrame:
    """One row per (kind, layer); a hybrid's entries are its attention layers, under their model numbers."""
    def numbers(values: list) -> list[int]:
        return result.get("attention_layers") or list(range(len(values)))

    return pd.DataFrame([{"kind": kind, "layer": layer, "share": 100 * value}
                         for kind, rate in result["kinds"].items()
                         for layer, value in zip(numbers(rate["per_layer"]), rate["per_layer"])])


def sinkrate_layers(result: dict) -> alt.Chart:
    """Per layer: the share of heads whose α on token 0 is above ε, one line per kind."""
    return alt.Chart(layer_frame(result)).mark_line(point=True).encode(
        x=alt.X("layer:O", title="layer"),
        y=alt.Y("share:Q", title="% of heads with α₀ > ε", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("kind:N", sort=list(KINDS), legend=alt.Legend(orient="top", title=None)),
        tooltip=["kind", "layer", alt.Tooltip("share:Q", format=".1f")],
    ).properties(width=420, height=220, title="Sink₁ by layer")


def peak_frame(peak: Sequence[Sequence[float]], tokens: Sequence[str]) -> pd.DataFrame:
    labels = token_axis_labels(tokens)
    return pd.DataFrame([{"layer": layer, "index": index, "token": labels[index], "peak": float(value)}
                         for layer, row in enumerate(peak) for index, value in enumerate(row)])


def peak_heatmap(peak: Sequence[Sequence[float]], tokens: Sequence[str]) -> alt.Chart:
    """Layer x token heatmap of the largest |h| over feature dims, on a log colour scale (peaks span 10^4x).

    Token labels are data categories ("3 the"), never spliced into a Vega expression.
    """
    frame = peak_frame(peak, tokens)
    labels = token_axis_labels(tokens)
    return alt.Chart(frame).mark_rect().encode(
        x=alt.X("token:N", sort=labels, axis=token_axis(len(labels), "token")),
        y=alt.Y("layer:O", title="layer", sort="descending"),
        color=alt.Color("peak:Q", title="max |h|", scale=alt.Scale(type="log", scheme="inferno")),
        tooltip=["layer", "token", alt.Tooltip("peak:Q", format=",.1f")],
    ).properties(width=alt.Step(max(2, min(24, 780 // max(1, len(labels))))), height=min(420, max(120, 12 * len(peak))),
                 title="Peak residual activation per layer and token")


def features_frame(rows: Sequence[dict]) -> pd.DataFrame:
    return pd.DataFrame([{**row, "feature": f"L{row['layer']} · #{row['token']} {short_token(row['token_text'])} · dim {row['dim']}"}
                         for row in rows])


def top_features(rows: Sequence[dict]) -> alt.LayerChart:
    """The largest |h| entries (one per token and dim, at the layer where each peaks) on a log axis.

    A bar on a log scale has no zero to start from, so each bar runs explicitly from the axis' lower
    edge (a decade below the smallest value) to its value; names are never cut (``labelLimit`` fits
    the longest), and each bar carries its value as text."""
    frame = features_frame(rows)
    low = 10.0 ** math.floor(math.log10(max(float(frame["max_abs"].min()), 1e-6)))
    high = float(frame["max_abs"].max()) * 3
    frame["low"] = low
    frame["shown"] = [f"{v:,.0f}" if v >= 10 else f"{v:.2g}" for v in frame["max_abs"]]
    x = alt.X("max_abs:Q", title="|h| (log scale)", scale=alt.Scale(type="log", domain=[low, high], nice=False))
    y = alt.Y("feature:N", sort=None, title=None,
              axis=alt.Axis(labelLimit=int(7 * frame["feature"].str.len().max() + 20)))
    base = alt.Chart(frame).encode(y=y)
    bars = base.mark_bar(color="#3b528b").encode(
        x=x, x2="low:Q",
        tooltip=["layer", "token", "token_text", "dim", alt.Tooltip("value:Q", format=",.1f"),
                 alt.Tooltip("ratio:Q", format=",.0f")])
    values = base.mark_text(align="left", dx=4, fontSize=11).encode(x=x, text="shown:N")
    return (bars + values).properties(width=420, height=max(80, 22 * len(rows)), title="Top features")


def arms_frame(intervention: dict) -> pd.DataFrame:
    return pd.DataFrame([{"arm": name, "delta": arm["delta_nll"], "low": arm["ci95"][0], "high": arm["ci95"][1]}
                         for name, arm in intervention["arms"].items()])


def intervention_bars(intervention: dict) -> alt.LayerChart:
    """ΔNLL of setting the massive entries to zero vs to their mean, with 95% CIs."""
    base = alt.Chart(arms_frame(intervention)).encode(y=alt.Y("arm:N", title="set to", sort=["zero", "mean"]))
    bars = base.mark_bar().encode(x=alt.X("delta:Q", title="ΔNLL (nats per token)"),
                                  tooltip=["arm", alt.Tooltip("delta:Q", format="+.4f"),
                                           alt.Tooltip("low:Q", format="+.4f"), alt.Tooltip("high:Q", format="+.4f")])
    whiskers = base.mark_rule(color="black").encode(x="low:Q", x2="high:Q")
    return (bars + whiskers).properties(width=420, height=45 * max(1, len(intervention["arms"])),
                                        title=f"Intervention at layer {intervention['layer']}")
