"""Evaluate: redistribute attention inside the forward pass and measure what the outputs do.

Tabs: run on texts (NLL/KL/cosine with a β sweep beside the controls and per-sink evidence),
STS-B (Spearman), Findings (forest plots of everything stored) and the stored tables. A stored
evaluation reopens with all its charts at ``?evaluation=ID``, a calibration at ``?calibration=NAME``.
Each part is a section under ``dashboard/sections/evaluate_*.py``.
"""
from __future__ import annotations

import streamlit as st

from dashboard import links, services, sharing
from dashboard.sections import evaluate_findings, evaluate_form, evaluate_results, evaluate_run, evaluate_stored
from dashboard.sections import evaluate_sts
from dashboard.sections.evaluate_results import View
from sinkfix.errors import SinkFixError

RESULT = "_ev_result"  # the latest evaluation of this session (a View, with its clean forwards)
STS_RESULT = "_ev_sts_result"


def deep_link(store) -> bool:
    """Show the evaluation or calibration named in the URL; True when one was shown."""
    evaluation_id = links.parse_evaluation_id(st.query_params.get("evaluation"))
    if evaluation_id is not None:
        row = store.evaluation(evaluation_id, viewer=services.viewer())
        if row is None:
            raise links.LinkError(f"no evaluation with id {evaluation_id} in {store.path}")
        sharing.control("evaluation", evaluation_id)
        latest = st.session_state.get(RESULT)
        if row["kind"] == "sts":
            latest = st.session_state.get(STS_RESULT)
        # This session's own result keeps its forwards (predictions); otherwise the stored JSON.
        evaluate_results.render(latest if isinstance(latest, View) and latest.id == evaluation_id
                                else evaluate_results.stored_view(row))
        return True
    name = st.query_params.get("calibration")
    if name:
        found = store.calibration(name, viewer=services.viewer())
        if found is None:
            raise links.LinkError(f"no calibration named '{name}' in {store.path}")
        sharing.control("calibration", name)
        evaluate_stored.show_calibration(name, found)
        return True
    return False


st.title("Evaluate")
st.caption("Redistribute attention away from chosen tokens inside the forward pass (ACT), then measure how the "
           "model's outputs change, beside two controls: random tokens with the same attention mass, and token 0.")
store = services.store_or_stop()
try:
    if deep_link(store):
        st.page_link(links.EVALUATE, label="Back to the Evaluate page", icon=":material/arrow_back:",
                     query_params={})
        st.divider()
except SinkFixError as error:
    st.error(str(error))

texts_tab, sts_tab, findings_tab, stored_tab = st.tabs(["Texts (NLL, KL)", "STS-B", "Findings", "Stored"])
with texts_tab:
    request, clicked = evaluate_form.render(store)
    if clicked and request is not None:
        done = evaluate_run.run_evaluation(request, store)
        if done is not None:
            st.session_state[RESULT] = done
            # Into the URL, like Analyze and Experiments, so a reload or a shared link reopens it.
            st.query_params["evaluation"] = str(done.id)
            st.rerun()
    try:
        latest = st.session_state.get(RESULT)
        if isinstance(latest, View) and st.query_params.get("evaluation") != str(latest.id):
            evaluate_results.render(latest)
    except SinkFixError as error:
        st.error(str(error))
with sts_tab:
    sts_request, sts_clicked = evaluate_sts.form()
    if sts_clicked and sts_request is not None:
        found = evaluate_sts.run(sts_request, store)
        if found is not None:
            st.session_state[STS_RESULT] = View(id=found["id"], kind="sts", result=found["result"])
            st.query_params["evaluation"] = str(found["id"])
            st.rerun()
    shown = st.session_state.get(STS_RESULT)
    if shown is not None and st.query_params.get("evaluation") != str(shown.id):
        evaluate_sts.show(shown)
with findings_tab:
    try:
        evaluate_findings.render(store)
    except SinkFixError as error:
        st.error(str(error))
with stored_tab:
    try:
        evaluate_stored.calibrations_table(store)
        evaluate_stored.evaluations_table(store)
    except SinkFixError as error:
        st.error(str(error))
