"""Chart builders for the training lab: pure functions ``lab result JSON -> DataFrame / alt.Chart``.

The result is ``sinkfix.experiments.lab`` JSON: ``variants`` (mean and 95% CI over seeds of the
final checkpoint) and ``runs`` (one per variant and seed, with every checkpoint's metrics).
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from sinkfix.experiments.lab.variants import VARIANTS

METRICS = {
    "first_token_mass": "first-token attention mass",
    "sink_rate": "Sink₁^ε (share of heads)",
    "massive_ratio": "top |h| ÷ median |h|",
    "value_norm_ratio": "token 0's value norm ÷ median",
    "val_loss": "validation loss (nats)",
    "learned_sink_mass": "mass on the learned sink",
    "register_share": "mass on the registers",
    "first_content_mass": "mass on <s> (first token after registers)",
}


def _variants(result: dict) -> list[str]:
    return list(dict.fromkeys(run["variant"] for run in result["runs"]))


def curve_frame(result: dict, metric: str) -> pd.DataFrame:
    """Per (variant, step): the mean over seeds and the band from the lowest to the highest seed."""
    rows = [{"variant": run["variant"], "seed": run["seed"], "step": c["step"], "value": c[metric]}
            for run in result["runs"] for c in run["checkpoints"] if metric in c]
    if not rows:
        return pd.DataFrame(columns=["variant", "step", "mean", "low", "high", "seeds"])
    frame = pd.DataFrame(rows).groupby(["variant", "step"], sort=False)["value"]
    out = frame.agg(mean="mean", low="min", high="max", seeds="count").reset_index()
    return out.sort_values(["variant", "step"], kind="stable").reset_index(drop=True)


def training_curves(result: dict, metric: str) -> alt.LayerChart:
    """One line per variant (mean over seeds) with a band from the lowest to the highest seed."""
    frame = curve_frame(result, metric)
    order = _variants(result)
    color = alt.Color("variant:N", sort=order, legend=alt.Legend(title=None, orient="top"))
    base = alt.Chart(frame).encode(x=alt.X("step:Q", title="training step"), color=color)
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q", title=METRICS.get(metric, metric)), y2="high:Q")
    line = base.mark_line(point=True).encode(
        y="mean:Q", tooltip=["variant", "step", alt.Tooltip("mean:Q", format=".4f"), alt.Tooltip("low:Q", format=".4f"),
                             alt.Tooltip("high:Q", format=".4f"), "seeds"])
    return (band + line).properties(width=520, height=260, title=f"{METRICS.get(metric, metric)} during training")


# The final table's columns: (summary metric, column name, scale) in the units convention (dashboard.units):
# a rate in %, attention mass as a decimal share, ratios and losses as numbers.
FINAL_COLUMNS = (
    ("first_token_mass", "first-token mass", 1.0),
    ("sink_rate", "Sink₁ %", 100.0),
    ("massive_ratio", "top |h| ÷ median", 1.0),
    ("value_norm_ratio", "value norm ÷ median", 1.0),
    ("val_loss", "val loss (nats)", 1.0),
)


def final_frame(result: dict) -> pd.DataFrame:
    """One row per variant: each summary metric's mean and 95% CI over seeds, beside the paper's claim."""
    rows = []
    for variant, metrics in result["variants"].items():
        row: dict[str, object] = {"variant": variant}
        for name, column, scale in FINAL_COLUMNS:
            entry = metrics[name]
            low, high = entry["ci95"]
            row[column] = scale * entry["mean"]
            row[f"{column} CI"] = f"[{scale * low:.3f}, {scale * high:.3f}]"
        known = VARIANTS.get(variant)
        row["papers' claim"] = known.claim if known else ""
        row["source"] = known.source if known else ""
        rows.append(row)
    return pd.DataFrame(rows)


def final_bars(result: dict, metric: str = "first_token_mass") -> alt.LayerChart:
    """The final value per variant with 95% CI whiskers over seeds."""
    frame = pd.DataFrame([{"variant": v, "mean": m[metric]["mean"], "low": m[metric]["ci95"][0],
                           "high": m[metric]["ci95"][1]} for v, m in result["variants"].items()])
    base = alt.Chart(frame).encode(x=alt.X("variant:N", sort=list(result["variants"]), title=None))
    bars = base.mark_bar().encode(y=alt.Y("mean:Q", title=METRICS.get(metric, metric)),
                                  tooltip=["variant", alt.Tooltip("mean:Q", format=".4f"),
                                           alt.Tooltip("low:Q", format=".4f"), alt.Tooltip("high:Q", format=".4f")])
    whiskers = base.mark_rule(color="black").encode(y="low:Q", y2="high:Q")
    return (bars + whiskers).properties(width=360, height=240, title=f"final {METRICS.get(metric, metric)}, 95% CI")


def sink_share_frame(result: dict) -> pd.DataFrame:
    """Where the mass goes besides the tokens: the learned sink (softmax1, sinklogit) and the registers,
    next to the first token's and <s>'s mass, final checkpoint, mean over seeds (min-max over seeds)."""
    rows = []
    for variant in _variants(result):
        finals = [run["final"] for run in result["runs"] if run["variant"] == variant]
        for name in ("learned_sink_mass", "register_share", "first_token_mass", "first_content_mass"):
            values = [f[name] for f in finals if name in f]
            if not values or (name == "register_share" and not any(values)):
                continue
            if name == "first_content_mass" and not any(f.get("register_share") for f in finals):
                continue  # without registers, <s> is token 0: the same number as first_token_mass
            rows.append({"variant": variant, "where": METRICS[name], "mean": float(np.mean(values)),
                         "low": float(np.min(values)), "high": float(np.max(values))})
    return pd.DataFrame(rows, columns=["variant", "where", "mean", "low", "high"])


def sink_share_bars(result: dict) -> alt.LayerChart:
    frame = sink_share_frame(result)
    base = alt.Chart(frame).encode(x=alt.X("variant:N", sort=_variants(result), title=None),
                                   xOffset=alt.XOffset("where:N"))
    bars = base.mark_bar().encode(
        y=alt.Y("mean:Q", title="attention mass (mean over queries)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("where:N", legend=alt.Legend(title=None, orient="top")),
        tooltip=["variant", "where", alt.Tooltip("mean:Q", format=".4f"), alt.Tooltip("low:Q", format=".4f"),
                 alt.Tooltip("high:Q", format=".4f")])
    whiskers = base.mark_rule(color="black").encode(y="low:Q", y2="high:Q")
    return (bars + whiskers).properties(width=420, height=240, title="learned sink and registers vs the first token")
