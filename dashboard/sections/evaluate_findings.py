"""Evaluate page, Findings: "does correcting sinks help?" answered from what is stored, as forest plots
(Δ with its 95% CI per study, the random and token-0 controls beside the intervention)."""
from __future__ import annotations

import streamlit as st

from dashboard import services, ui
from sinkfix.plots import findings as findings_charts

MOST = 60  # evaluations read; the newest first


def render(store) -> None:
    st.subheader("Findings: does correcting sinks help?")
    viewer = services.viewer()
    calibrations = [(store.calibration(r["name"], viewer=viewer) or {}) | {"name": r["name"]}
                    for r in store.calibrations(viewer=viewer)]
    frame = findings_charts.findings_frame(store.evaluations(limit=MOST, viewer=viewer), calibrations)
    if frame.empty:
        st.info("Nothing to draw yet: findings come from stored evaluations with an LM head (NLL), STS-B runs and "
                "calibrations. Run one on the other tabs, or `python -m sinkfix evaluate/sts/calibrate`.")
        return
    ui.show_chart(findings_charts.forest_plot(frame), "findings-forest",
                  "One line per stored study (newest first): the point is the change in the metric, the whisker its "
                  "95% bootstrap CI, the dashed line no change. Beside each intervention (blue) are its controls on "
                  "the same heads: random tokens with matched attention mass (orange) and token 0 (purple). A gain "
                  "the controls share is no evidence that the chosen tokens matter.")
    with st.expander("The numbers"):
        st.dataframe(frame.drop(columns=["arm_key"]), hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="%+.4f") for c in ("delta", "low", "high")})
