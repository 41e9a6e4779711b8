"""Evaluate page, STS-B mode: Spearman of a sentence encoder on STS Benchmark pairs, with and without
an intervention, with progress, saved like ``python -m sinkfix sts`` (kind ``sts``)."""
from __future__ import annotations

import os
import time

import streamlit as st

from dashboard import services, ui, units, visitors
from dashboard.progress import StatusProgress
from dashboard.sections import model_picker
from dashboard.sections.evaluate_view import intervention_label
from sinkfix import models
from sinkfix.errors import SinkFixError
from sinkfix.experiments.intervene import Intervention, parse_layers
from sinkfix.experiments.sts import load_sts, sts
from sinkfix.policy import files

# A folder or file in the data folders (SINKFIX_DATA, SINKFIX_DATA_DIRS); SINKFIX_STS_DATA names another one there.
DEFAULT_DATA = os.environ.get("SINKFIX_STS_DATA", "stsbenchmark")
TARGETS = ["first", "detrimental", "random"]


def _default_data() -> str:
    """The box's starting value: STS-B when it is in the data folders, never a path that is not there."""
    try:
        files.resolve(DEFAULT_DATA, folder_ok=True)
    except SinkFixError:
        return ""
    return DEFAULT_DATA


def form() -> tuple[dict | None, bool]:
    left, right = st.columns([3, 2], gap="large")
    with left:
        choice = model_picker.render("sts", [models.DEFAULT_MODEL, *[m for m in models.EMBEDDED if m != models.DEFAULT_MODEL]],
                                     help="A sentence encoder: sentence embeddings are the mean of the final "
                                     "hidden states. minilm is the model STS-B suits.")
        data = st.text_input("STS-B data", value=_default_data(), key="sts_data",
                             help="The folder holding sts-test.csv and sts-dev.csv, or one of those files, in this "
                                  "server's data folders; other paths are not read.")
        cols = st.columns(2)
        split = cols[0].selectbox("Split", ["test", "dev"], key="sts_split", help="Used when the path is a folder.")
        limit = cols[1].number_input("Pairs", min_value=10, max_value=5000, value=200, step=50, key="sts_limit",
                                     help="The first N pairs of the split (1379 in test). Fewer pairs: a wider CI.")
    with right:
        target = st.selectbox("Target", TARGETS, key="sts_target",
                              help="Which tokens lose attention inside the forward pass, as on the texts tab.")
        beta = st.slider("β", 0.0, 1.0, 0.0, 0.05, key="sts_beta", help="Share of the target's attention kept.")
        layers = st.text_input("Layers", key="sts_layers", placeholder="all layers", help="e.g. 2-4; empty: all.")
    clicked = st.button("Run STS-B", type="primary", icon=":material/play_arrow:", key="sts_run")
    try:
        intervention = Intervention(target=target, beta=beta, layers=parse_layers(layers))
    except SinkFixError as error:
        if clicked:
            st.error(str(error))
        return None, clicked
    return {"model": choice.name, "device": choice.device, "dtype": choice.dtype, "data": data.strip(),
            "split": split, "limit": int(limit), "intervention": intervention}, clicked


def run(request: dict, store) -> dict | None:
    """Load the pairs (a bad path is an error box before any model loads), score, save; None on error."""
    try:
        path = files.resolve(request["data"], folder_ok=True)  # one line for a missing or forbidden path
        request = {**request, "data": files.shown_name(path)}  # stored as the page names it, not a server path
        data = load_sts(path, request["split"], request["limit"])
    except SinkFixError as error:
        st.error(str(error))
        return None
    started = time.perf_counter()
    failed = None
    with st.status(f"STS-B on {ui.escape_md(request['model'])}: {len(data)} pairs…", expanded=True) as status:
        progress = StatusProgress(status)
        try:
            with visitors.turn(request["model"], status):  # one job per model at a time, the place in line shown
                loaded = services.model_shelf().get(request["model"], progress=progress.stage,
                                                    device=request["device"], dtype=request["dtype"])
                result = sts(loaded, data, request["intervention"], progress=progress)
            out = result.to_json() | {"model": loaded.name, "source": "dashboard", "data": request["data"],
                                      "split": request["split"]}
            evaluation_id = store.save_evaluation("sts", out, viewer=services.viewer())
        except SinkFixError as error:
            failed = str(error)
        if failed is None:
            status.update(label=f"Evaluation {evaluation_id} saved: STS-B, {len(data)} pairs in "
                          f"{time.perf_counter() - started:.1f} s", state="complete", expanded=False)
        else:
            status.update(label="STS-B failed", state="error", expanded=False)
    if failed is not None:
        st.error(failed)
        return None
    return {"id": evaluation_id, "kind": "sts", "result": out}


def show(view) -> None:
    """One stored or fresh STS-B result: Spearman before and after, the change with its CI."""
    from sinkfix.plots import evaluation_result

    e = view.result
    st.header(f"Evaluation {view.id} · STS-B · {ui.escape_md(view.model)} · {ui.escape_md(intervention_label(e))}")
    cols = st.columns(4)
    low, high = e.get("delta_ci95") or (None, None)
    cols[0].metric("Baseline Spearman", f"{e['baseline_spearman']:.4f}")
    if e.get("intervened_spearman") is not None:
        cols[1].metric("Intervened Spearman", f"{e['intervened_spearman']:.4f}", delta=f"{e['delta_spearman']:+.4f}")
        # The CI goes in the caption: an interval is too wide for a metric tile and would be cut ("[-0.1458, -0.0…").
        cols[2].metric("Change", f"{e['delta_spearman']:+.4f}", help="Intervened − baseline Spearman.")
        st.caption(f"95% CI of the change: {units.interval(low, high)} (paired bootstrap over pairs, the same "
                   "resampled pairs for both).")
    cols[3].metric("Pairs", e.get("n_pairs"))
    st.caption(f"Sentences with a target token: {e.get('sentences_with_targets')} of {e.get('n_sentences')}. "
               "Spearman: higher is better. Saved as evaluation "
               f"{view.id}; link: `?evaluation={view.id}`.")
    forest = evaluation_result.forest({"id": view.id, "kind": "sts", "model": view.model, "result": e})
    if forest is not None:
        ui.show_chart(forest, f"evaluation{view.id}-sts-forest",
                      "The change in Spearman with its 95% CI; the line at 0 is no change.")
