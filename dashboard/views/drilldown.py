"""Drill-down: one run, layer by layer and head by head. ``?run=ID&layer=L&head=H`` restores the view.

The run id, layer, head and metric widgets are bound to the URL (``bind="query-params"``), so a
reload or a shared link shows the same head. Only the selected head's T x T map is read from the
database and sent to the browser.
"""
from collections import OrderedDict

import pandas as pd
import streamlit as st

from dashboard import links, services, sharing, ui, units, visitors
from dashboard.progress import StatusProgress
from sinkfix.plots import analysis as charts, run as run_charts
from sinkfix.analysis.display import show_token
from sinkfix import layers
from sinkfix.engines.maps import needs_maps, recompute_maps
from sinkfix.errors import SinkFixError

MAPS_HELD = 24  # heads' maps kept per session (256 tokens: 0.5 MB per head)
METRICS = run_charts.HEAD_METRICS  # each metric's name on the grid and how to read it


def _pick_recent() -> None:
    st.session_state.run = str(st.session_state.dd_recent)


def _pick_cell() -> None:
    """A click on the grid moves the layer/head inputs (and so the URL) to that cell."""
    cells = st.session_state.dd_grid["selection"].get("cell") or []
    if cells:
        st.session_state.layer = int(cells[0]["layer"])
        st.session_state.head = int(cells[0]["head"])


def choose_run(store) -> int | None:
    if "dd_goto" in st.session_state:
        st.session_state.run = st.session_state.pop("dd_goto")
    left, right = st.columns([1, 3])
    left.text_input("Run id", key="run", bind="query-params", placeholder="e.g. 1")
    recent = store.list(limit=30, viewer=services.viewer())
    if recent:
        right.selectbox(
            "or pick a recent run", [r["id"] for r in recent], index=None, key="dd_recent", on_change=_pick_recent,
            format_func=lambda i: next(f"#{r['id']} · {r['model']} · {ui.shorten(r['text'], 70)}"
                                       for r in recent if r["id"] == i),
            placeholder="recent runs",
        )
    return links.parse_run_id(st.session_state.get("run"))


def head_grid(store, analysis) -> tuple[int, int]:
    rows = pd.DataFrame(store.head_rows(analysis.run_id, viewer=services.viewer()))
    left, right = st.columns([2, 3], gap="large")
    with left:
        metric = st.selectbox("Metric", list(METRICS), key="metric", bind="query-params",
                              format_func=lambda m: METRICS[m][0])
        layer = layer_picker(analysis)
        head = st.number_input("Head", 0, analysis.n_heads - 1, step=1, key="head", bind="query-params")
        st.caption(METRICS[metric][1])
        st.caption("Click a cell to open that head, or type the layer and head.")
        chosen = rows[(rows["layer"] == layer) & (rows["head"] == head)]
        if len(chosen):
            st.markdown(f"**Layer {layer}, head {head}**")
            # One quantity per line, values formatted here: a narrow grid column cut 0.0123 to "0".
            st.table(head_summary(chosen.iloc[0]))
    with right:
        if rows[metric].isna().all():
            st.info(f"{METRICS[metric][0]} is not available for this run's model ({analysis.model_type}).")
            metric = "top_alpha"
        chart = run_charts.metric_grid(rows, metric, selected=(layer, head), selectable=True)
        ui.show_chart(chart, f"run{analysis.run_id}-{metric}-grid", key="dd_grid", on_select=_pick_cell,
                      selection_mode="cell")
    return layer, head


def cached_head_map(store, run_id: int, layer: int, head: int):
    """One head's (original, corrected) maps, decoded once per session: going back to a head is free."""
    held: OrderedDict = st.session_state.setdefault("_dd_maps", OrderedDict())
    viewer = services.viewer()
    key = (viewer, run_id, layer, head)  # per viewer: another sign-in in this session reads afresh
    if key not in held:
        held[key] = store.head_map(run_id, layer, head, viewer=viewer)
        while len(held) > MAPS_HELD:
            held.popitem(last=False)
    held.move_to_end(key)
    return held[key]


def head_summary(row) -> pd.DataFrame:
    """The selected head's row of ``Store.head_rows`` as (quantity, value) lines, each value a string."""
    share = row.top_contribution_share
    lines = pd.DataFrame({"quantity": ["top sink", "α of the top sink", "entropy", "token-0 share",
                                       "contribution share of the top sink"],
                          "value": [f"#{int(row.top_token)} {show_token(row.top_token_text)}", f"{row.top_alpha:.4f}",
                                    f"{row.entropy:.3f} nats", units.percent(row.token0_share),
                                    units.MISSING if share is None or share != share else units.percent(share)]})
    gate = getattr(row, "gate", None)
    if gate is None or gate != gate:
        return lines
    # Gated attention: the head's mean output gate, right under the first-token mass it may stand in for.
    gated = pd.DataFrame({"quantity": ["output gate (mean sigmoid)"], "value": [f"{gate:.3f}"]})
    return pd.concat([lines.iloc[:4], gated, lines.iloc[4:]], ignore_index=True)


def layer_picker(analysis) -> int:
    """The model's own layer numbers; a hybrid offers its attention layers and says which layers are not."""
    if analysis.attention_layers is None:
        return st.number_input("Layer", 0, analysis.n_layers - 1, step=1, key="layer", bind="query-params")
    numbers = analysis.layer_numbers
    if st.session_state.get("layer") not in numbers:  # e.g. a click on another run's grid named another layer
        st.session_state.layer = numbers[0]
    layer = st.selectbox("Layer", numbers, key="layer", bind="query-params")
    st.caption(f"Attention in layers {', '.join(map(str, numbers))} of 0..{analysis.n_layers - 1}. Layers "
               f"{', '.join(map(str, analysis.non_attention_layers))} mix tokens without softmax attention "
               f"(linear attention, a state-space layer or a convolution), so they have no attention to show.")
    return layer


def check_link(analysis) -> None:
    """``?layer=`` / ``?head=`` must name a head of this run: a bad value is an error, never a silent layer 0."""
    raw = {name: st.query_params.get(name) for name in ("layer", "head")}
    try:
        for name, value in raw.items():
            if value is not None and not str(value).strip().isdigit():
                raise links.LinkError(f"'{value}' is not a {name} number: {name}s are whole numbers from 0 up")
        if raw["layer"] is not None:
            layers.row_of(int(raw["layer"]), analysis.n_layers, getattr(analysis, "attention_layers", None))
        if raw["head"] is not None and not int(raw["head"]) < analysis.n_heads:
            raise links.LinkError(f"head {raw['head']} is out of range: run {analysis.run_id} has heads "
                                  f"0..{analysis.n_heads - 1}")
    except SinkFixError as error:
        st.error(f"This link names a head that run {analysis.run_id} does not have: {error}.")
        st.page_link(links.DRILLDOWN, label=f"Open run {analysis.run_id} at layer 0, head 0", icon=":material/grid_on:",
                     query_params=links.drilldown_query(analysis.run_id))
        st.stop()


def head_map(store, analysis, layer: int, head: int) -> None:
    st.subheader(f"Layer {layer}, head {head}: attention map")
    pair = cached_head_map(store, analysis.run_id, layer, head)
    if pair is None:
        if needs_maps(analysis):
            offer_recompute(store, analysis)
        else:
            st.info(f"This run has {analysis.n_tokens} tokens, above its map limit "
                    f"({analysis.settings.map_token_limit}), so per-head maps were not kept.")
        return
    original, corrected = pair
    ui.show_chart(
        run_charts.head_maps(analysis, layer, head, original, corrected),
        f"run{analysis.run_id}-L{layer}H{head}-map",
        ("Rows are queries, columns the tokens they attend to (by position: a map this long is drawn as one "
         "image, without hover); each row sums to 1. " if analysis.n_tokens > charts.RASTER_ABOVE else
         "Rows are queries, columns the tokens they attend to; each row sums to 1. ")
        + "Corrected: detrimental sinks "
        f"keep β = {analysis.settings.beta:g} of their attention, the rest goes to the other tokens.",
    )
    if analysis.sink_indices:
        ui.show_chart(
            run_charts.head_change(analysis, layer, head, original, corrected),
            f"run{analysis.run_id}-L{layer}H{head}-change",
            "Red: attention taken from the detrimental sinks; blue: where it went.",
        )
    else:
        st.caption("No token of this run is detrimental, so the corrected map equals the original.")


def offer_recompute(store, analysis) -> None:
    """A summary-only corpus run: re-run this one text with its maps kept, as a new linked run."""
    st.info("This run stored summaries only (corpus runs keep no attention maps by default), so there is "
            "no per-head map to show.")
    if not st.button("Recompute maps", icon=":material/refresh:", key="dd_recompute",
                     help="Re-run this text with the same model and settings and store the maps as a new run "
                          "(its parent is this one); corpus lines that held this run then point to the new one."):
        return
    with st.status(f"Recomputing the maps of run {analysis.run_id}…", expanded=True) as status:
        try:
            with visitors.turn(analysis.model_name, status):  # one job per model at a time (docs/security.md)
                shown = StatusProgress(status, first=f"loading {analysis.model_name}", unit=" layers")
                loaded = services.model_shelf().get(analysis.model_name, progress=shown.stage)
                shown.stage(f"running one forward pass over {analysis.n_tokens} tokens")
                fresh = recompute_maps(store, analysis.run_id, loaded, shown.layers, viewer=services.viewer())
        except SinkFixError as error:
            status.update(label="Recomputing failed", state="error", expanded=False)
            st.error(str(error))
            return
        status.update(label=f"Maps stored as run {fresh.run_id}", state="complete", expanded=False)
    services.remember(fresh)
    st.session_state.dd_goto = str(fresh.run_id)  # the run widget exists already: move it on the rerun
    st.rerun()


def per_layer(analysis, layer: int) -> None:
    st.subheader("Layer by layer")
    hybrid = analysis.attention_layers is not None
    ui.show_chart(
        run_charts.layer_curves(analysis), f"run{analysis.run_id}-layer-curves",
        "Attention each token receives in each layer (mean over heads and queries). A sink shows as a line "
        "far above the rest from some layer on." + (" Grey dashed rules mark layers without attention." if hybrid else ""),
    )
    ui.show_chart(
        run_charts.value_norm_layers(analysis),
        f"run{analysis.run_id}-value-norm-layers",
        "Norm of each token's full value vector per layer (not normalised). Sinks often have small norms.",
    )
    ui.show_chart(
        run_charts.value_norm_heads(analysis, layer),
        f"run{analysis.run_id}-L{layer}-value-norm-heads",
        f"Per-head value norms at layer {layer}. This model has {analysis.n_kv_heads} KV heads for "
        f"{analysis.n_heads} attention heads; head h reads KV head h ÷ {max(1, analysis.n_heads // analysis.n_kv_heads)} "
        "(rounded down).",
    )


@st.fragment
def head_view(store, analysis) -> None:
    """The head picker, the grid and the selected head's map. A fragment: a new head reruns and redraws
    only this part, not the run's header, token strip and per-layer charts (which need a new layer, and
    then the whole page reruns)."""
    layer, head = head_grid(store, analysis)
    drawn = (analysis.run_id, int(layer))
    if st.session_state.pop("_dd_app_run", False):  # part of a whole-page run: the per-layer charts follow
        st.session_state["_dd_layer_drawn"] = drawn
    elif st.session_state.get("_dd_layer_drawn") != drawn:  # a fragment run that changed the layer
        st.rerun(scope="app")
    head_map(store, analysis, int(layer), int(head))


st.title("Drill-down")
store = services.store_or_stop()
try:
    run_id = choose_run(store)
    if run_id is None:
        st.info("Choose a run: type its id, pick a recent one, or open one from History or Analyze.")
        st.stop()
    analysis = services.load_run(run_id)
    st.header(ui.run_title(analysis))
    ui.run_summary(analysis)
    sharing.control("run", run_id)
    if analysis.parent_run_id is not None:
        st.caption(ui.provenance(analysis, services.run_info(analysis.parent_run_id)))
    check_link(analysis)
    st.page_link(links.ANALYZE, label="Token-level results of this run", icon=":material/science:",
                 query_params={"run": str(run_id)})
    long = analysis.n_tokens > ui.LONG_TOKENS
    if long:
        st.page_link(links.LONGRUN, label=f"Long-run view: where the sinks are along all {analysis.n_tokens:,} tokens",
                     icon=":material/timeline:", query_params={"run": str(run_id)})
    else:
        ui.show_chart(run_charts.tokens(analysis), f"run{run_id}-tokens")
    st.session_state["_dd_app_run"] = True
    head_view(store, analysis)
    if not long:  # per-token curves over thousands of tokens: the long-run view draws those
        per_layer(analysis, st.session_state["_dd_layer_drawn"][1])
except SinkFixError as error:
    st.error(str(error))
