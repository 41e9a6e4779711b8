"""Analyze: pick a model, paste text, run, and read the sinks. ``?run=ID`` shows a stored run."""
import numpy as np
import streamlit as st

from dashboard import charts, links, services, ui
from sinkfix import models, settings as defaults
from sinkfix.errors import SinkFixError
from sinkfix.settings import AnalysisSettings

OTHER = "Other: hub id or local path"
PRESETS = {
    "Seed example ([MASK] sentence)": services.SEED_TEXT,
    "Plain sentence": "The quick brown fox jumps over the lazy dog near the river bank.",
    "Question": "What is the capital city of France, and why did it become the capital?",
    "Repetition": "the the the the the cat sat on the mat the the the end.",
    "Code": "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
}


def _fill_preset() -> None:
    st.session_state.an_text = PRESETS[st.session_state.an_preset]


def inputs() -> tuple[str, str, AnalysisSettings | None, bool]:
    """The form: model, text and settings. Returns (model, text, settings or None if invalid, clicked)."""
    left, right = st.columns([3, 2], gap="large")
    with left:
        choice = st.selectbox(
            "Model", [*models.EMBEDDED, OTHER], key="an_model",
            help="Embedded models work offline. Other: a Hugging Face hub id (needs the hub or a local cache) "
            "or a local directory holding config.json and weights.",
        )
        model = choice
        if choice == OTHER:
            model = st.text_input("Hub id or local path", key="an_model_other", placeholder="google-bert/bert-base-uncased")
        st.selectbox("Preset", list(PRESETS), key="an_preset", on_change=_fill_preset,
                     help="Fills the text box with an example.")
        if "an_text" not in st.session_state:
            st.session_state.an_text = services.SEED_TEXT
        text = st.text_area("Text", key="an_text", height=110)
    with right:
        st.markdown("**Settings**")
        layer = st.number_input(
            "Value-norm layer", min_value=0, value=None, step=1, key="an_layer", placeholder="middle layer (L // 2)",
            help="value_norm[j] = ‖v[l,·,j]‖, the norm of token j's full value vector at this layer, divided by "
            "its max over tokens so it lies in [0, 1]. Empty: the middle layer.",
        )
        tau_att = st.slider(
            "τ_att", 0.0, 1.0, defaults.DEFAULT_TAU_ATT, 0.01, key="an_tau_att",
            help="att_received[j] = (1/T)·Σ_i Ā[i,j], where Ā averages the attention maps over layers and heads; "
            "it sums to 1 over tokens. A token (other than token 0) with att_received ≥ τ_att and "
            "value_norm ≤ τ_norm is detrimental.",
        )
        tau_norm = st.slider(
            "τ_norm", 0.0, 1.0, defaults.DEFAULT_TAU_NORM, 0.01, key="an_tau_norm",
            help="Upper bound on value_norm (÷ max over tokens) for a detrimental token: high attention, "
            "little content. Token 0 is always beneficial; everything else is neutral.",
        )
        beta = st.slider(
            "β", 0.0, 1.0, defaults.DEFAULT_BETA, 0.05, key="an_beta",
            help="Correction (ACT): a detrimental sink keeps β of the attention it receives; the other 1−β is "
            "spread over the remaining tokens in proportion to their attention, so rows still sum to 1.",
        )
        epsilon = st.slider(
            "ε", 0.0, 1.0, defaults.DEFAULT_EPSILON, 0.05, key="an_epsilon",
            help="Sink rate of token j = fraction of (layer, head) pairs with α[l,h,j] > ε, where α is the "
            "attention token j receives averaged over the queries that can see it.",
        )
    try:
        chosen = AnalysisSettings(layer=layer, tau_att=tau_att, tau_norm=tau_norm, beta=beta, epsilon=epsilon)
    except SinkFixError as error:
        st.error(str(error))
        chosen = None
    clicked = st.button("Analyze", type="primary", icon=":material/play_arrow:", key="an_run")
    return model, text, chosen, clicked


def results(analysis) -> None:
    st.header(ui.run_title(analysis))
    ui.run_summary(analysis)
    cols = st.columns(3)
    cols[0].page_link(links.DRILLDOWN, label="Open in drill-down", icon=":material/grid_on:",
                      query_params=links.drilldown_query(analysis.run_id))
    previous = [r for r in st.session_state.get("_sinkfix_runs", {}) if r != analysis.run_id]
    if previous:
        cols[1].page_link(links.COMPARE, label=f"Compare with run {previous[-1]}", icon=":material/compare_arrows:",
                          query_params=links.compare_query([previous[-1], analysis.run_id]))
    else:
        cols[1].page_link(links.COMPARE, label="Compare with other runs", icon=":material/compare_arrows:",
                          query_params=links.compare_query([analysis.run_id]))
    cols[2].page_link(links.HISTORY, label="All runs", icon=":material/history:")

    frame = ui.token_frame(analysis)
    s = analysis.settings
    ui.show_chart(charts.token_strip(analysis.tokens, analysis.labels), f"run{analysis.run_id}-tokens",
                  "Each tile is one token as the tokenizer produced it. Green: beneficial (token 0), "
                  "red: detrimental (high attention, small value vector), grey: neutral.")

    # Stacked with the same width per token, so a token's two bars line up.
    ui.show_chart(
        charts.token_bars(frame, "att_received", "Attention received per token", s.tau_att, "τ_att"),
        f"run{analysis.run_id}-att-received",
        "Share of all attention each token receives, averaged over layers, heads and queries (sums to 1). "
        "Dashed line: τ_att.",
    )
    ui.show_chart(
        charts.token_bars(frame, "value_norm", f"Value norm per token (layer {s.layer})", s.tau_norm, "τ_norm"),
        f"run{analysis.run_id}-value-norm",
        f"Norm of each token's value vector at layer {s.layer}, divided by the largest. Dashed line: τ_norm.",
    )

    left, right = st.columns([3, 2], gap="large")
    with left:
        ui.show_chart(
            charts.classification_plane(frame, s.tau_att, s.tau_norm), f"run{analysis.run_id}-plane",
            "Every token is a point. Tokens in the shaded corner (att_received ≥ τ_att, value_norm ≤ τ_norm) "
            "are detrimental, except token 0, which the seed rule always calls beneficial. Hover for values.",
        )
    with right:
        st.markdown("**Per-token values**")
        st.dataframe(frame.drop(columns=["position"]), hide_index=True, height=380,
                     column_config={"index": st.column_config.NumberColumn("#", width=40),
                                    "token": st.column_config.TextColumn(width=90),
                                    "att_received": st.column_config.NumberColumn("att", format="%.4f", width=64),
                                    "value_norm": st.column_config.NumberColumn("norm", format="%.3f", width=56),
                                    "label": st.column_config.TextColumn(width=90),
                                    "sink_rate": st.column_config.NumberColumn("sink rate", format="%.2f", width=64)})

    head_grid(analysis)
    mean_maps(analysis)

    st.subheader("Downloads")
    ui.analysis_downloads(analysis)
    st.caption("Every chart above has its own PNG and SVG buttons.")


def head_grid(analysis) -> None:
    st.subheader("Which heads sink where")
    s = analysis.settings
    labels = charts.token_axis_labels(analysis.tokens)
    default = int(np.argmax(analysis.sink_rate))
    left, right = st.columns([2, 3])
    mode = left.radio("Show", ["α of one token", "α of each head's top sink"], key="an_grid_mode")
    if mode == "α of one token":
        token = right.selectbox("Token", range(analysis.n_tokens), index=default, format_func=lambda j: labels[j],
                             key=f"an_grid_token_{analysis.run_id}")
        values = analysis.alpha[:, :, token]
        frame = charts.head_frame(values, "alpha", {"above_epsilon": values > s.epsilon})
        title = f"α of token {labels[token]} in every head"
        caption = (f"α[l,h,j]: attention token j receives in head (l, h), averaged over the queries that can see it. "
                   f"Sink rate of this token = share of heads with α > ε ({s.epsilon:g}) = "
                   f"{analysis.sink_rate[token]:.2f}.")
    else:
        top = analysis.alpha.argmax(axis=2)
        frame = charts.head_frame(analysis.alpha.max(axis=2), "alpha",
                                  {"top_token": np.array(labels, dtype=object)[top]})
        title = "α of the strongest sink in every head"
        caption = "For each head, the token with the largest α and its value; hover to see which token it is."
    ui.show_chart(charts.head_grid(frame, "alpha", title, domain=(0, 1)), f"run{analysis.run_id}-head-grid", caption)


def mean_maps(analysis) -> None:
    st.subheader("Attention before and after correction")
    if analysis.mean_map is None:
        st.info(f"This run has {analysis.n_tokens} tokens, above the map limit of "
                f"{analysis.settings.map_token_limit}, so the full maps were not kept.")
        return
    sinks = ", ".join(charts.token_axis_labels(analysis.tokens)[i] for i in analysis.sink_indices)
    ui.show_chart(
        charts.attention_pair(analysis.mean_map, analysis.corrected_mean_map, analysis.tokens,
                              "Attention averaged over layers and heads"),
        f"run{analysis.run_id}-mean-maps",
        f"Rows are queries, columns the tokens they attend to. Corrected: detrimental sinks ({sinks}) keep "
        f"β = {analysis.settings.beta:g} of their attention and the rest is spread over the other tokens."
        if sinks else "No token is detrimental under these thresholds, so the corrected map equals the original. "
        "Lower τ_att or raise τ_norm to see a correction.",
    )
    if sinks:
        ui.show_chart(
            charts.attention_change(analysis.mean_map, analysis.corrected_mean_map, analysis.tokens,
                                    "Change made by the correction (corrected − original)"),
            f"run{analysis.run_id}-mean-change",
            "Red: attention taken from the detrimental sinks; blue: where it went. Each row's changes sum to 0.",
        )


st.title("Analyze")
model_name, text, chosen, clicked = inputs()
if clicked and chosen is not None:
    done = services.run_analysis(text, model_name, chosen)
    if done is not None:
        st.query_params["run"] = str(done.run_id)

try:
    run_id = links.parse_run_id(st.query_params.get("run"))
    if run_id is not None:
        services.store_or_stop()
        results(services.load_run(run_id))
except SinkFixError as error:
    st.error(str(error))
