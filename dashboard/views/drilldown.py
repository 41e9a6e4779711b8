"""Drill-down: one run, layer by layer and head by head. ``?run=ID&layer=L&head=H`` restores the view.

The run id, layer, head and metric widgets are bound to the URL (``bind="query-params"``), so a
reload or a shared link shows the same head. Only the selected head's T x T map is read from the
database and sent to the browser.
"""
import pandas as pd
import streamlit as st

from dashboard import charts, links, services, ui, visitors
from dashboard.tokens import show_token, show_tokens
from sinkfix.engines.maps import needs_maps, recompute_maps
from sinkfix.errors import SinkFixError

METRICS = {
    "top_alpha": ("α of the top sink", "α of the token that receives the most attention in the head "
                  "(averaged over the queries that can see it); hover to see which token."),
    "entropy": ("entropy", "Mean entropy of the head's attention rows, in nats: low = focused, high = spread out."),
    "token0_share": ("token-0 share", "Share of the head's attention that goes to token 0."),
    "top_contribution_share": ("norm-based contribution", "Share of the head's norm-based contribution "
                               "‖A·v·W_O‖ (Kobayashi et al. 2020) that comes from its top sink: a sink with "
                               "a high α but a low share writes little into the residual stream."),
}


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
    recent = store.list(limit=30)
    if recent:
        right.selectbox(
            "or pick a recent run", [r["id"] for r in recent], index=None, key="dd_recent", on_change=_pick_recent,
            format_func=lambda i: next(f"#{r['id']} · {r['model']} · {ui.shorten(r['text'], 70)}"
                                       for r in recent if r["id"] == i),
            placeholder="recent runs",
        )
    return links.parse_run_id(st.session_state.get("run"))


def head_grid(store, analysis) -> tuple[int, int]:
    rows = pd.DataFrame(store.head_rows(analysis.run_id))
    left, right = st.columns([2, 3], gap="large")
    with left:
        metric = st.selectbox("Metric", list(METRICS), key="metric", bind="query-params",
                              format_func=lambda m: METRICS[m][0])
        layer = st.number_input("Layer", 0, analysis.n_layers - 1, step=1, key="layer", bind="query-params")
        head = st.number_input("Head", 0, analysis.n_heads - 1, step=1, key="head", bind="query-params")
        st.caption(METRICS[metric][1])
        st.caption("Click a cell to open that head, or type the layer and head.")
        chosen = rows[(rows["layer"] == layer) & (rows["head"] == head)]
        if len(chosen):
            row = chosen.iloc[0]
            st.markdown(f"**Layer {layer}, head {head}**")
            st.dataframe(pd.DataFrame([{
                "top sink": f"{int(row.top_token)} {show_token(row.top_token_text)}",
                "α": row.top_alpha, "entropy": row.entropy, "token-0 share": row.token0_share,
                "contribution share": row.top_contribution_share,
            }]), hide_index=True)
    with right:
        if rows[metric].isna().all():
            st.info(f"{METRICS[metric][0]} is not available for this run's model ({analysis.model_type}).")
            metric = "top_alpha"
        frame = rows[["layer", "head", metric, "top_token_text"]].rename(columns={"top_token_text": "top_token"})
        frame["top_token"] = show_tokens(frame["top_token"])
        chart = charts.head_grid(frame, metric, f"{METRICS[metric][0]} per head", selectable=True,
                                 selected=(layer, head))
        ui.show_chart(chart, f"run{analysis.run_id}-{metric}-grid", key="dd_grid", on_select=_pick_cell,
                      selection_mode="cell")
    return layer, head


def head_map(store, analysis, layer: int, head: int) -> None:
    st.subheader(f"Layer {layer}, head {head}: attention map")
    pair = store.head_map(analysis.run_id, layer, head)
    if pair is None:
        if needs_maps(analysis):
            offer_recompute(store, analysis)
        else:
            st.info(f"This run has {analysis.n_tokens} tokens, above its map limit "
                    f"({analysis.settings.map_token_limit}), so per-head maps were not kept.")
        return
    original, corrected = pair
    ui.show_chart(
        charts.attention_pair(original, corrected, analysis.tokens, f"Layer {layer}, head {head}"),
        f"run{analysis.run_id}-L{layer}H{head}-map",
        "Rows are queries, columns the tokens they attend to; each row sums to 1. Corrected: detrimental sinks "
        f"keep β = {analysis.settings.beta:g} of their attention, the rest goes to the other tokens.",
    )
    if analysis.sink_indices:
        ui.show_chart(
            charts.attention_change(original, corrected, analysis.tokens,
                                    f"Layer {layer}, head {head}: corrected − original"),
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
                loaded = services.model_shelf().get(analysis.model_name, progress=status.write)
                status.write(f"running one forward pass over {analysis.n_tokens} tokens")
                fresh = recompute_maps(store, analysis.run_id, loaded)
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
    ui.show_chart(
        charts.layer_curves(analysis.att_received_layer, analysis.tokens), f"run{analysis.run_id}-layer-curves",
        "Attention each token receives in each layer (mean over heads and queries). A sink shows as a line "
        "far above the rest from some layer on.",
    )
    ui.show_chart(
        charts.token_heatmap(analysis.value_norm_layer, analysis.tokens, "layer", "value_norm",
                             "Value-vector norm per layer"),
        f"run{analysis.run_id}-value-norm-layers",
        "Norm of each token's full value vector per layer (not normalised). Sinks often have small norms.",
    )
    kv_head = head_kv(analysis, st.session_state.get("head", 0))
    ui.show_chart(
        charts.token_heatmap(analysis.value_norm_head[layer], analysis.tokens, "kv_head", "value_norm",
                             f"Value norm per KV head, layer {layer}"),
        f"run{analysis.run_id}-L{layer}-value-norm-heads",
        f"Per-head value norms at layer {layer}. This model has {analysis.n_kv_heads} KV heads for "
        f"{analysis.n_heads} attention heads; the selected head reads KV head {kv_head}.",
    )


def head_kv(analysis, head: int) -> int:
    return int(head) // max(1, analysis.n_heads // analysis.n_kv_heads)


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
    if analysis.parent_run_id is not None:
        st.caption(f"Recomputed from run {analysis.parent_run_id}.")
    st.page_link(links.ANALYZE, label="Token-level results of this run", icon=":material/science:",
                 query_params={"run": str(run_id)})
    ui.show_chart(charts.token_strip(analysis.tokens, analysis.labels), f"run{run_id}-tokens")
    layer, head = head_grid(store, analysis)
    head_map(store, analysis, int(layer), int(head))
    per_layer(analysis, int(layer))
except SinkFixError as error:
    st.error(str(error))
