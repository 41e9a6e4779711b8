"""Secondary sinks: how many sink in each layer, and how well an activation outlier predicts them
(precision and recall with 95% CIs, for Sun et al.'s rule and looser outliers). Pure builders."""
from __future__ import annotations

import altair as alt
import pandas as pd


def layers_frame(result: dict) -> pd.DataFrame:
    return pd.DataFrame({"layer": range(len(result["by_layer"])), "sinks": result["by_layer"]})


def layers_chart(result: dict) -> alt.Chart:
    """Secondary sinks per layer (a sink counts in every layer where it passes the rule)."""
    return alt.Chart(layers_frame(result)).mark_bar(color="#2166ac").encode(
        x=alt.X("layer:O", title="layer"), y=alt.Y("sinks:Q", title="secondary sinks"),
        tooltip=["layer", "sinks"],
    ).properties(width=480, height=140, title=f"Secondary sinks by layer · n = {result['n_windows']} windows, "
                                              f"{len(result['sinks'])} sinks")


def prediction_frame(result: dict) -> pd.DataFrame:
    """One row per (predictor, measure): Sun et al.'s rule first, then each looser outlier threshold."""
    rows = []
    steps = [("massive (Sun et al.)", result["predictor"])]
    steps += [(f"peak ≥ {step['ratio']:.0f}× median", step) for step in result["ladder"] if step["ratio"] < 1000]
    for name, step in steps:
        for measure in ("precision", "recall"):
            entry = step[measure]
            ci = entry["ci95"]
            rows.append({"predictor": name, "measure": measure, "value": entry["value"],
                         "low": None if ci is None else ci[0], "high": None if ci is None else ci[1],
                         "hits": entry["hits"], "total": entry["total"]})
    return pd.DataFrame(rows, columns=["predictor", "measure", "value", "low", "high", "hits", "total"])


def prediction_chart(result: dict) -> alt.LayerChart:
    """Precision and recall per predictor with CI whiskers; an undefined precision (nothing flagged) is absent."""
    frame = prediction_frame(result)
    order = list(dict.fromkeys(frame["predictor"]))
    base = alt.Chart(frame).encode(y=alt.Y("predictor:N", sort=order, title=None),
                                   yOffset=alt.YOffset("measure:N"),
                                   color=alt.Color("measure:N", legend=alt.Legend(title=None, orient="top")))
    bars = base.transform_filter("isValid(datum.value)").mark_bar().encode(
        x=alt.X("value:Q", title="share", scale=alt.Scale(domain=[0, 1])),
        tooltip=["predictor", "measure", alt.Tooltip("value:Q", format=".2f"), alt.Tooltip("low:Q", format=".2f"),
                 alt.Tooltip("high:Q", format=".2f"), "hits", "total"])
    whiskers = base.transform_filter("isValid(datum.low)").mark_rule(color="black").encode(x="low:Q", x2="high:Q")
    # An undefined share says so in words (and keeps every predictor on the axis when nothing is defined).
    undefined = base.transform_filter("!isValid(datum.value)").transform_calculate(
        zero="0", label="'undefined: ' + datum.measure + (datum.total == 0 ? ' (nothing counted)' : '')").mark_text(
        align="left", dx=3, fontSize=11, color="#555555").encode(x=alt.X("zero:Q", scale=alt.Scale(domain=[0, 1])),
                                                                 text="label:N")
    values = base.transform_filter("isValid(datum.value)").transform_calculate(
        at="isValid(datum.high) ? datum.high : datum.value").mark_text(align="left", dx=3, fontSize=11).encode(
        x="at:Q", text=alt.Text("value:Q", format=".2f"))  # beside the whisker's end, not on it
    return (bars + whiskers + values + undefined).properties(width=420, height=40 * max(1, len(order)),
                                        title="Does an activation outlier predict a secondary sink?")
