"""Evaluate page, what is stored: the evaluations and calibrations tables (each row links to its
deep link), and one stored calibration reopened with ``?calibration=NAME``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import links, services, ui, units
from sinkfix.plots import analysis as charts, findings as findings_charts


def _heldout(row: dict, arm: str) -> tuple[float | None, list | None]:
    value = row.get(arm) or {}
    if "delta_spearman" in value:
        return value.get("delta_spearman"), value.get("delta_ci95")
    return value.get("delta_nll"), value.get("delta_nll_ci95")


def calibrations_table(store) -> None:
    st.subheader("Stored calibrations")
    rows = store.calibrations(viewer=services.viewer())
    if not rows:
        st.info("No calibrations yet. Search heads on a dev split and store them under a name: "
                "`python -m sinkfix calibrate --model smollm2-135m --data tinyshakespeare.txt --name smol-first "
                "--target first --max-heads 20`; then pick them here under Heads.")
        return
    table = []
    for row in rows:
        full = store.calibration(row["name"], viewer=services.viewer()) or {}
        heldout = full.get("heldout") or {}
        target, ci = _heldout(heldout, "target")
        intervention = full.get("intervention") or {}
        table.append({
            "open": links.url(links.EVALUATE, {"calibration": row["name"]}),
            "name": row["name"], "model": row["model"], "task": f"{row['task']} ({row['metric']})",
            "intervention": f"{intervention.get('target')}, β={intervention.get('beta')}",
            "kept heads": f"{len(row['kept_heads'])}: " + ", ".join(f"{layer}:{head}" for layer, head in row["kept_heads"]),
            "dev baseline": row["dev_baseline"],
            "held-out Δ target": target,
            "95% CI": None if not ci else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]",
            "held-out Δ random": _heldout(heldout, "random")[0],
            "held-out Δ token 0": _heldout(heldout, "first")[0],
            "created": units.when(row["created_at"]),
        })
    st.dataframe(pd.DataFrame(table), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%+.4f") for c in
        ("held-out Δ target", "held-out Δ random", "held-out Δ token 0")} | {
        "dev baseline": st.column_config.NumberColumn(format="%.4f"),
        "kept heads": st.column_config.TextColumn(width="medium"),
        "open": st.column_config.LinkColumn("open", display_text="open", width="small")})
    st.caption("Δ is the held-out change of the metric (Spearman: higher is better; NLL: lower is better) for the "
               "kept heads, and for the random and token-0 controls on the same heads.")


def evaluations_table(store) -> None:
    st.subheader("Recent evaluations")
    rows = store.evaluations(limit=20, viewer=services.viewer())
    if not rows:
        st.info("No evaluations yet: run one above, or `python -m sinkfix evaluate --text ... --model smollm2-135m`.")
        return
    st.dataframe(evaluations_frame(rows), hide_index=True, column_config={
        "open": st.column_config.LinkColumn("open", display_text="open", width="small"),
        "id": st.column_config.NumberColumn(width="small")})
    st.caption("evaluate rows: NLL in nats per token (— without an LM head); sts rows: Spearman. "
               "open: every chart of that evaluation (`?evaluation=ID`).")


def evaluations_frame(rows: list[dict]) -> pd.DataFrame:
    """``Store.evaluations`` rows as the Stored tab shows them: the link first (so it is never off-screen),
    a readable time, numbers formatted with their sign convention, "—" where a value does not exist."""
    return pd.DataFrame([{
        "open": links.url(links.EVALUATE, {"evaluation": str(r["id"])}),
        "id": r["id"], "created": units.when(r["created_at"]), "kind": r["kind"], "model": r["model"],
        "intervention": f"{r['target']}, β={r['beta']:g}",
        "heads": "all" if r["heads"] is None else f"{len(r['heads'])} heads",
        "baseline": units.number(r["baseline"], ".4f"), "intervened": units.number(r["intervened"], ".4f"),
        "delta": units.number(r["delta"], "+.4f"), "95% CI": units.interval(r["ci_low"], r["ci_high"]),
        "KL": units.number(r["result"].get("kl_mean"), ".4f"),
        "cosine": units.number(r["result"].get("cosine_mean"), ".4f"),
    } for r in rows], columns=["open", "id", "created", "kind", "model", "intervention", "heads", "baseline",
                               "intervened", "delta", "95% CI", "KL", "cosine"])


def show_calibration(name: str, calibration: dict) -> None:
    """A stored calibration: the head search (gain per tried head, kept ones ringed) and the held-out
    result of the kept heads beside its controls."""
    intervention = calibration.get("intervention") or {}
    kept = [tuple(h) for h in calibration.get("kept_heads") or []]
    st.header(f"Calibration @{ui.escape_md(name)} · {ui.escape_md(calibration.get('model', ''))}")
    cols = st.columns(4)
    cols[0].metric("Task", f"{calibration.get('task')} ({calibration.get('metric')})")
    cols[1].metric("Kept heads", f"{len(kept)} of {calibration.get('n_tried')} tried")
    cols[2].metric("Dev baseline", f"{calibration.get('dev_baseline', float('nan')):.4f}")
    cols[3].metric("Intervention", f"{intervention.get('target')}, β = {intervention.get('beta')}")
    for note in calibration.get("notes") or []:
        st.caption(ui.escape_md(note))
    trials = calibration.get("trials") or []
    if trials:
        layers = 1 + max(t["layer"] for t in trials)
        heads = 1 + max(t["head"] for t in trials)
        gain = np.full((layers, heads), np.nan)
        for t in trials:
            gain[t["layer"], t["head"]] = t["gain"]
        limit = float(np.nanmax(np.abs(gain))) if np.isfinite(gain).any() else 1.0
        frame = charts.head_frame(np.nan_to_num(gain), "gain", {"kept": [[(l, h) in kept for h in range(heads)]
                                                                         for l in range(layers)]})
        ui.show_chart(charts.head_grid(frame, "gain", "Dev gain of each tried head alone (kept: > min gain)",
                                       scheme="blueorange", domain=(-(limit or 1.0), limit or 1.0)),
                      f"calibration-{name}-heads",
                      "Each cell: the dev metric's improvement when only that head is intervened on (positive is "
                      "better, whatever the metric); 0 for heads that were not tried. Hover for kept.")
    frame = findings_charts.findings_frame([], [calibration | {"name": name}])
    if len(frame):
        ui.show_chart(findings_charts.forest_plot(frame), f"calibration-{name}-heldout",
                      "Held-out change with its 95% CI for the kept heads (target) and the controls on the same heads.")
    else:
        st.info("No held-out result: no head was kept.")
