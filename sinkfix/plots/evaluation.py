"""Pure chart builders for the Evaluate page: plain data in, ``alt.Chart`` out (no Streamlit).

Token strings are user data; Vega draws them as text and its tooltip escapes HTML.
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from .analysis import label_scale, short_token, token_axis, token_axis_labels

# The arm names SweepPoint uses, as the legend shows them, in legend order.
ARMS = {"target": "target", "random": "random (control)", "first": "token 0 (control)"}
ARM_COLORS = ("#1f5fbf", "#e08214", "#7b3294")
ROLE_COLORS = {"redistributed (target)": "#d73027", "other token": "#4575b4"}
ROLES = list(ROLE_COLORS)
METRICS = {
    "nll": "NLL (nats per token)",
    "kl": "KL divergence (nats)",
    "cosine": "cosine of final hidden states",
}


def sweep_frame(points: Sequence[dict]) -> pd.DataFrame:
    """``SweepPoint.to_json()`` rows -> one row per (arm, β): NLL with its 95% CI band, KL, top-1, cosine.

    The CI is the bootstrap CI of the NLL change, shifted by the baseline NLL so it sits on the curve.
    The target arm is named after its target ("target: first"), the controls after what they are.
    """
    rows = []
    for p in points:
        nll, delta, ci = p.get("intervened_nll"), p.get("delta_nll"), p.get("delta_nll_ci95")
        base = None if nll is None or delta is None else nll - delta
        shown = f"target: {p.get('target')}" if p["arm"] == "target" else ARMS.get(p["arm"], p["arm"])
        rows.append({
            "arm_key": p["arm"],
            "arm": shown,
            "target": p.get("target"),
            "beta": float(p["beta"]),
            "nll": nll,
            "nll_low": None if ci is None or base is None else base + ci[0],
            "nll_high": None if ci is None or base is None else base + ci[1],
            "delta_nll": delta,
            "kl": p.get("kl_mean"),
            "top1": p.get("top1_agreement"),
            "cosine": p.get("cosine_mean"),
        })
    return pd.DataFrame(rows, columns=["arm_key", "arm", "target", "beta", "nll", "nll_low", "nll_high", "delta_nll",
                                       "kl", "top1", "cosine"])


def arm_scale(frame: pd.DataFrame) -> alt.Scale:
    """The arms present, in legend order (target, random, token 0), each with its fixed colour."""
    colors = dict(zip(ARMS, ARM_COLORS))
    present = frame.drop_duplicates("arm_key").set_index("arm_key")["arm"]
    keys = [k for k in ARMS if k in present.index]
    return alt.Scale(domain=[present[k] for k in keys], range=[colors[k] for k in keys])


def _beta_axis() -> alt.X:
    # β = 1 (nothing moved) on the left, β = 0 (all of the target's attention moved) on the right.
    return alt.X("beta:Q", title="β (share of the target's attention kept)",
                 scale=alt.Scale(domain=[1, 0], nice=False), axis=alt.Axis(values=[1, 0.8, 0.6, 0.4, 0.2, 0]))


def _sweep_tooltip() -> list:
    return ["arm:N", "target:N", alt.Tooltip("beta:Q", format=".2f"), alt.Tooltip("nll:Q", format=".4f"),
            alt.Tooltip("delta_nll:Q", format="+.4f"), alt.Tooltip("kl:Q", format=".4f"),
            alt.Tooltip("top1:Q", format=".3f"), alt.Tooltip("cosine:Q", format=".4f")]


def sweep_panel(frame: pd.DataFrame, metric: str, baseline: float | None = None) -> alt.LayerChart:
    """One metric against β, a line per arm. NLL gets its CI band and a dashed baseline."""
    scale = arm_scale(frame)
    # One legend object for the line and the CI band: a null legend on either would drop it for both.
    legend = alt.Legend(title=None, orient="top", symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3)
    color = alt.Color("arm:N", scale=scale, legend=legend)
    base = alt.Chart(frame).encode(x=_beta_axis())
    layers = []
    if metric == "nll" and frame["nll_low"].notna().any():
        layers.append(base.mark_area(opacity=0.12).encode(
            y=alt.Y("nll_low:Q", title=METRICS[metric], scale=alt.Scale(zero=False)), y2="nll_high:Q",
            color=color,
        ))
    layers.append(base.mark_line(point=alt.OverlayMarkDef(size=60)).encode(
        y=alt.Y(f"{metric}:Q", title=METRICS[metric], scale=alt.Scale(zero=metric == "kl")),
        color=color, tooltip=_sweep_tooltip(),
    ))
    if baseline is not None:
        rule = pd.DataFrame({"y": [baseline], "what": ["baseline (no intervention)"]})
        layers.append(alt.Chart(rule).mark_rule(strokeDash=[5, 4], color="#333").encode(
            y="y:Q", tooltip=["what:N", alt.Tooltip("y:Q", format=".4f")]))
    title = {"nll": "NLL against β", "kl": "KL against β", "cosine": "Cosine against β"}[metric]
    return alt.layer(*layers).properties(width=380, height=260, title=title)


def sweep_chart(frame: pd.DataFrame, has_lm: bool) -> alt.HConcatChart | alt.LayerChart:
    """NLL and KL side by side for a model with an LM head; cosine alone for one without."""
    if not has_lm:
        return sweep_panel(frame, "cosine", baseline=1.0)
    ones = frame[frame["beta"] == 1.0]["nll"].dropna()
    baseline = float(ones.iloc[0]) if len(ones) else None
    return alt.hconcat(sweep_panel(frame, "nll", baseline), sweep_panel(frame, "kl")).resolve_scale(color="shared")


def position_chart(tokens: Sequence[str], positions: Sequence[int], values: Sequence[float], value_name: str,
                   title: str, targets: Sequence[int] = (), selected: int | None = None) -> alt.LayerChart:
    """One bar per scored position (labelled by its token), red where the token was redistributed.
    ``selected`` (a position) gets an outline, so the predictions below can be found on the chart."""
    labels = token_axis_labels(tokens)
    chosen = set(targets)
    frame = pd.DataFrame({
        "index": list(positions),
        "position": [labels[p] for p in positions],
        "token": [tokens[p] for p in positions],
        value_name: np.asarray(values, dtype=float),
        "role": [ROLES[0] if p in chosen else ROLES[1] for p in positions],
    })
    order = list(frame["position"])
    step = int(min(48, max(4, 780 // max(len(frame), 1))))
    x = alt.X("position:N", sort=order, axis=token_axis(len(order)))
    bars = alt.Chart(frame).mark_bar().encode(
        x=x, y=alt.Y(f"{value_name}:Q", title=value_name),
        color=alt.Color("role:N", scale=alt.Scale(domain=list(ROLE_COLORS), range=list(ROLE_COLORS.values())),
                        legend=alt.Legend(title=None, orient="top")),
        tooltip=["index:Q", "token:N", "role:N", alt.Tooltip(f"{value_name}:Q", format=".4f")],
    )
    layers = [bars]
    if chosen & set(positions):
        # A triangle on each target, so a target whose bar is 0 (nothing changed there) is still marked.
        layers.append(alt.Chart(frame[frame["role"] == ROLES[0]]).mark_point(
            shape="triangle-up", filled=True, size=70, color=ROLE_COLORS[ROLES[0]], opacity=1,
        ).encode(x=x, y=alt.datum(0), tooltip=["index:Q", "token:N", "role:N"]))
    if selected is not None and selected in set(positions):
        mark = frame[frame["index"] == selected]
        layers.append(alt.Chart(mark).mark_bar(fill=None, stroke="#111", strokeWidth=2).encode(
            x=x, y=f"{value_name}:Q"))
    return alt.layer(*layers).properties(width=alt.Step(step), height=220, title=title)


def predictions_frame(before: Sequence[tuple[str, float]], after: Sequence[tuple[str, float]]) -> pd.DataFrame:
    """Top-k lists side by side, one row per rank; tokens shown with visible space marks."""
    ranks = max(len(before), len(after))
    rows = []
    for rank in range(ranks):
        b = before[rank] if rank < len(before) else ("", float("nan"))
        a = after[rank] if rank < len(after) else ("", float("nan"))
        rows.append({"rank": rank + 1, "before": short_token(b[0], 24), "p_before": b[1],
                     "after": short_token(a[0], 24), "p_after": a[1]})
    return pd.DataFrame(rows, columns=["rank", "before", "p_before", "after", "p_after"])


def predictions_chart(before: Sequence[tuple[str, float]], after: Sequence[tuple[str, float]],
                      title: str) -> alt.HConcatChart:
    """The top-k next-token probabilities before and after the intervention, on one probability scale."""
    top = max([p for _, p in [*before, *after]] or [1.0])
    panels = []
    for name, items in (("before", before), ("after", after)):
        frame = pd.DataFrame({
            "rank": range(1, len(items) + 1),
            "token": [short_token(t, 24) for t, _ in items],
            "probability": [p for _, p in items],
            "when": name,
        })
        panels.append(alt.Chart(frame).mark_bar(color="#1f5fbf" if name == "before" else "#d73027").encode(
            y=alt.Y("token:N", sort=list(frame["token"]), title=None, axis=alt.Axis(labelLimit=160)),
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, min(1.0, top * 1.05)]), title="probability"),
            tooltip=["rank:Q", "token:N", alt.Tooltip("probability:Q", format=".4f")],
        ).properties(width=190, height=alt.Step(22), title=name))
    return alt.hconcat(*panels).properties(title=title)


def evidence_chart(rows: pd.DataFrame, has_lm: bool) -> alt.LayerChart:
    """Per candidate sink: the NLL change when it alone is redistributed (below 0: removing it helps),
    coloured by the evidence-based label. Without an LM head: the drop in cosine, coloured by the seed label."""
    frame = rows.copy()
    frame["position"] = [f"{i} {short_token(t)}" for i, t in zip(frame["index"], frame["token"])]
    if has_lm:
        field, title, label = "delta_nll", "ΔNLL (nats per token)", "evidence_label"
        heading = "NLL change when each candidate sink alone is redistributed"
    else:
        frame["cosine_drop"] = 1.0 - frame["cosine_mean"]
        field, title, label = "cosine_drop", "1 − cosine of final hidden states", "seed_label"
        heading = "Drift of the final hidden states when each candidate sink alone is redistributed"
    order = list(frame["position"])
    tooltip = ["index:Q", "token:N", "seed_label:N", alt.Tooltip("att_received:Q", format=".4f"),
               alt.Tooltip("value_norm:Q", format=".3f"), alt.Tooltip("cosine_mean:Q", format=".4f")]
    if has_lm:
        tooltip[3:3] = ["evidence_label:N", alt.Tooltip("delta_nll:Q", format="+.4f"),
                        alt.Tooltip("kl_mean:Q", format=".4f"), alt.Tooltip("top1_agreement:Q", format=".3f")]
    bars = alt.Chart(frame).mark_bar().encode(
        x=alt.X("position:N", sort=order, axis=token_axis(len(order), "candidate sink")),
        y=alt.Y(f"{field}:Q", title=title),
        color=alt.Color(f"{label}:N", scale=label_scale(),
                        legend=alt.Legend(title=label.replace("_", " "), orient="top")),
        tooltip=tooltip,
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#333").encode(y="y:Q")
    return alt.layer(bars, zero).properties(width=alt.Step(int(min(60, max(18, 600 // max(len(frame), 1))))),
                                            height=220, title=heading)
