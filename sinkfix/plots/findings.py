"""Findings: the evidence tables ("does correcting sinks help?") drawn from the stored evaluations and
calibrations as forest plots: one line per study, the intervention's Δ with its 95% CI, and the
controls on the same heads (random tokens with matched mass, token 0) beside it. Pure builders.
"""
from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from .evaluation import ARM_COLORS, ARMS

NLL = "ΔNLL, nats per token (below 0: helps)"
SPEARMAN = "ΔSpearman on STS-B (above 0: helps)"
COLUMNS = ["study", "source", "id", "model", "metric", "arm_key", "arm", "beta", "delta", "low", "high"]


def _delta(arm: dict) -> tuple[str, float | None, list | None]:
    if "delta_spearman" in arm:
        return SPEARMAN, arm.get("delta_spearman"), arm.get("delta_ci95")
    return NLL, arm.get("delta_nll"), arm.get("delta_nll_ci95")


def _row(study: str, source: str, ident, model: str, arm_key: str, target: str | None, beta, arm: dict) -> dict | None:
    metric, delta, ci = _delta(arm)
    if delta is None:
        return None  # no LM head: no NLL, nothing to plot
    shown = f"target: {target}" if arm_key == "target" else ARMS.get(arm_key, arm_key)
    return {"study": study, "source": source, "id": ident, "model": model, "metric": metric, "arm_key": arm_key,
            "arm": shown, "beta": beta, "delta": float(delta),
            "low": None if not ci else float(ci[0]), "high": None if not ci else float(ci[1])}


def findings_frame(evaluations: Sequence[dict], calibrations: Sequence[dict]) -> pd.DataFrame:
    """Rows from ``Store.evaluations()`` (kind evaluate or sts) and stored calibration JSON.

    An evaluation with a β sweep contributes its target and both controls at its own β (the sweep
    ran them on the same heads), or at the sweep's smallest β when the sweep skipped its own;
    without a sweep, the target alone. A calibration contributes its kept
    heads' held-out result and the controls it ran on them.
    """
    rows = []
    for row in evaluations:
        result, kind = row["result"], row["kind"]
        beta, target = result.get("beta"), result.get("target")
        arms = {"target": result}
        sweep = result.get("sweep") or []
        betas = {float(p["beta"]) for p in sweep}
        if sweep and (beta is None or float(beta) not in betas):
            beta = min(betas)  # the sweep did not run the evaluation's own β: its strongest point
            arms = {}
        for point in sweep:
            if float(point["beta"]) == float(beta):
                arms[point["arm"]] = point
        study = f"evaluation {row['id']} · {row['model']} · {target}, β={beta:g}" if beta is not None else \
            f"evaluation {row['id']} · {row['model']}"
        if kind == "sts":
            study += " · STS-B"
        for arm_key, arm in arms.items():
            rows.append(_row(study, "evaluation", row["id"], row["model"], arm_key, target, beta, arm))
    for calibration in calibrations:
        intervention = calibration.get("intervention") or {}
        target, beta = intervention.get("target"), intervention.get("beta")
        kept = len(calibration.get("kept_heads") or [])
        study = f"calibration @{calibration.get('name')} · {calibration.get('model')} · {kept} heads, held out"
        for arm_key, arm in (calibration.get("heldout") or {}).items():
            rows.append(_row(study, "calibration", calibration.get("name"), calibration.get("model", ""), arm_key,
                             target, beta, arm))
    return pd.DataFrame([r for r in rows if r is not None], columns=COLUMNS)


def _arm_scale(frame: pd.DataFrame) -> alt.Scale:
    """Every target label in the target colour, the controls in theirs."""
    colors = dict(zip(ARMS, ARM_COLORS))
    pairs = frame.drop_duplicates("arm")[["arm", "arm_key"]].itertuples(index=False)
    shown = sorted(pairs, key=lambda p: (list(ARMS).index(p.arm_key) if p.arm_key in ARMS else 9, p.arm))
    return alt.Scale(domain=[p.arm for p in shown], range=[colors.get(p.arm_key, "#555") for p in shown])


def forest_panel(frame: pd.DataFrame, metric: str) -> alt.LayerChart:
    """One metric: a line per study, the arms side by side within it (point = Δ, whisker = 95% CI)."""
    part = frame[frame["metric"] == metric]
    order = list(dict.fromkeys(part["study"]))
    y = alt.Y("study:N", sort=order, title=None, axis=alt.Axis(labelLimit=320))
    offset = alt.YOffset("arm:N", sort=list(_arm_scale(frame).domain))
    color = alt.Color("arm:N", scale=_arm_scale(frame), legend=alt.Legend(title=None, orient="top"))
    tooltip = ["study:N", "arm:N", alt.Tooltip("beta:Q", format=".2f"), alt.Tooltip("delta:Q", format="+.4f"),
               alt.Tooltip("low:Q", format="+.4f"), alt.Tooltip("high:Q", format="+.4f")]
    base = alt.Chart(part).encode(y=y, yOffset=offset, color=color)
    whiskers = base.transform_filter("isValid(datum.low)").mark_rule(strokeWidth=2).encode(
        x=alt.X("low:Q", title=metric), x2="high:Q", tooltip=tooltip)
    points = base.mark_point(filled=True, size=70, opacity=1).encode(x=alt.X("delta:Q", title=metric), tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#333", strokeDash=[4, 3]).encode(x="x:Q")
    return alt.layer(zero, whiskers, points).properties(
        width=420, height=alt.Step(14), title=metric.split(" (")[0] + " per study, controls beside")


def forest_plot(frame: pd.DataFrame) -> alt.VConcatChart | alt.LayerChart:
    """A panel per metric present (NLL and Spearman have different units), stacked."""
    metrics = [m for m in (NLL, SPEARMAN) if (frame["metric"] == m).any()]
    panels = [forest_panel(frame, m) for m in metrics]
    return panels[0] if len(panels) == 1 else alt.vconcat(*panels).resolve_scale(color="shared")
