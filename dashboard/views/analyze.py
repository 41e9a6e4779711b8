"""Analyze: pick a model, paste text, run, and read the sinks.

``?run=ID`` shows a stored run and loads its model, text and settings into the form, so changing
one threshold and pressing "Re-run with these settings" analyses the same text; the new run
records the one it re-ran (``parent_run_id``) and links back to it.
"""
import streamlit as st

from dashboard import links, services, sharing, ui
from sinkfix.plots import run as run_charts
from dashboard.sections import massive_badge, model_picker, run_grids, thresholds
from sinkfix.analysis.display import SINK_COLUMN
from sinkfix import settings as defaults
from sinkfix.errors import SinkFixError
from sinkfix.settings import AnalysisSettings

OTHER = model_picker.OTHER
LOADED = "_an_form_run"  # the run whose model, text and settings the form holds
PRESETS = {
    "Seed example ([MASK] sentence)": services.SEED_TEXT,
    "Plain sentence": "The quick brown fox jumps over the lazy dog near the river bank.",
    "Question": "What is the capital city of France, and why did it become the capital?",
    "Repetition": "the the the the the cat sat on the mat the the the end.",
    "Code": "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
}


def _fill(name: str) -> None:
    st.session_state.an_text = PRESETS[name]


def preset_of(text: str) -> str | None:
    """The example this text is, or None for the user's own text."""
    return next((name for name, value in PRESETS.items() if value == text), None)


def examples() -> None:
    """One button per example. Buttons hold no state, so what the box holds is said from its text on every
    run: a label that stays "Seed example" after the text changes cannot happen (a selectbox kept it, and
    changing the selectbox from a callback raced with the browser's own copy of it)."""
    row = st.container(horizontal=True, gap="small", horizontal_alignment="left", vertical_alignment="center")
    row.caption("Examples:", width="content")
    for index, name in enumerate(PRESETS):
        row.button(name.split(" (")[0], key=f"an_example_{index}", on_click=_fill, args=(name,), type="tertiary")


def load_into_form(analysis) -> None:
    """Put a stored run's model, text and settings into the form's widgets (before they are drawn),
    once per opened run, so later edits by the user are kept."""
    if st.session_state.get(LOADED) == analysis.run_id:
        return
    s = analysis.settings
    model_picker.set_model("an", analysis.model_name, analysis.device, analysis.dtype)
    st.session_state.an_text = analysis.text
    st.session_state.an_layer = s.layer
    st.session_state.an_tau_att = s.tau_att
    st.session_state.an_tau_norm = s.tau_norm
    st.session_state.an_beta = s.beta
    st.session_state.an_epsilon = s.epsilon
    st.session_state[LOADED] = analysis.run_id


def inputs(opened) -> tuple[model_picker.Choice, str, AnalysisSettings | None, str | None]:
    """The form: model, text and settings. Returns (model, text, settings or None if invalid, the
    button pressed: "new", "rerun" or None)."""
    # Defaults go into the session state, not the widgets, so a run loaded into the form does not
    # collide with a widget default (Streamlit warns when both are set).
    for key, value in (("an_tau_att", defaults.DEFAULT_TAU_ATT), ("an_tau_norm", defaults.DEFAULT_TAU_NORM),
                       ("an_beta", defaults.DEFAULT_BETA), ("an_epsilon", defaults.DEFAULT_EPSILON)):
        st.session_state.setdefault(key, value)
    left, right = st.columns([3, 2], gap="large")
    with left:
        model = model_picker.render("an")
        if "an_text" not in st.session_state:
            st.session_state.an_text = services.SEED_TEXT
        examples()
        text = st.text_area("Text", key="an_text", height=110)
        holds = preset_of(text)
        st.caption(f"The box holds the example “{holds}”." if holds else "The box holds your own text.")
    with right:
        st.markdown("**Settings**")
        layer = st.number_input(
            "Value-norm layer", min_value=0, value=None, step=1, key="an_layer", placeholder="middle layer (L // 2)",
            help="value_norm[j] = ‖v[l,·,j]‖, the norm of token j's full value vector at this layer, divided by "
            "its max over tokens so it lies in [0, 1]. Empty: the middle layer.",
        )
        exact = opened is not None and opened.text == st.session_state.an_text
        n_tokens = opened.n_tokens if exact else thresholds.estimate_tokens(st.session_state.an_text)
        tau_att = thresholds.tau_att_input("an", n_tokens, exact)
        tau_norm = st.number_input(
            "τ_norm", 0.0, 1.0, step=0.01, format="%.4f", key="an_tau_norm",
            help="Upper bound on value_norm (÷ max over tokens) for a detrimental token: high attention, "
            "little content. Token 0 is always beneficial; everything else is neutral. Typed values are kept exactly.",
        )
        beta = st.number_input(
            "β", 0.0, 1.0, step=0.05, format="%.4f", key="an_beta",
            help="Correction (ACT): a detrimental sink keeps β of the attention it receives; the other 1−β is "
            "spread over the remaining tokens in proportion to their attention, so rows still sum to 1.",
        )
        epsilon = st.number_input(
            "ε", 0.0, 1.0, step=0.05, format="%.4f", key="an_epsilon",
            help="Sink rate of token j = fraction of (layer, head) pairs with α[l,h,j] > ε, where α is the "
            "attention token j receives averaged over the queries that can see it.",
        )
    try:
        chosen = AnalysisSettings(layer=layer, tau_att=tau_att, tau_norm=tau_norm, beta=beta, epsilon=epsilon)
    except SinkFixError as error:
        st.error(str(error))
        chosen = None
    row = st.container(horizontal=True, gap="small")
    pressed = None
    if row.button("Analyze", type="primary" if opened is None else "secondary", icon=":material/play_arrow:",
                  key="an_run"):
        pressed = "new"
    if opened is not None and row.button(
        "Re-run with these settings", type="primary", icon=":material/replay:", key="an_rerun",
        help=f"Analyse the form's model, text and settings as a new run that records run {opened.run_id} as its "
             "origin.",
    ):
        pressed = "rerun"
    return model, text, chosen, pressed


def results(analysis) -> None:
    st.header(ui.run_title(analysis))
    ui.run_summary(analysis)
    sharing.control("run", analysis.run_id)
    cols = st.columns(3)
    cols[0].page_link(links.DRILLDOWN, label="Open in drill-down", icon=":material/grid_on:",
                      query_params=links.drilldown_query(analysis.run_id))
    previous = [r for r in services.recent_run_ids() if r != analysis.run_id]
    if previous:
        cols[1].page_link(links.COMPARE, label=f"Compare with run {previous[-1]}", icon=":material/compare_arrows:",
                          query_params=links.compare_query([previous[-1], analysis.run_id]))
    else:
        cols[1].page_link(links.COMPARE, label="Compare with other runs", icon=":material/compare_arrows:",
                          query_params=links.compare_query([analysis.run_id]))
    cols[2].page_link(links.HISTORY, label="All runs", icon=":material/history:")
    if analysis.parent_run_id is not None:
        st.page_link(links.ANALYZE, label=f"Re-run of run {analysis.parent_run_id} (open the original)",
                     icon=":material/subdirectory_arrow_left:", query_params={"run": str(analysis.parent_run_id)})
        st.caption(ui.provenance(analysis, services.run_info(analysis.parent_run_id)))
    if analysis.maps is None or analysis.n_tokens > ui.LONG_TOKENS:
        st.page_link(links.LONGRUN, label="Long-run view: where the sinks are along the whole text",
                     icon=":material/timeline:", query_params={"run": str(analysis.run_id)})
    if st.session_state.get("_sinkfix_cached") == analysis.run_id:
        st.info(f"This exact request (model, text and settings) was already stored as run {analysis.run_id}, "
                "so it was served from the database instead of analysed again.")

    if analysis.n_tokens > ui.LONG_TOKENS:
        st.info(f"This run has {analysis.n_tokens:,} tokens: one bar or tile per token would be unreadable and slow "
                "here. The long-run view (linked above) shows the whole text as a strip you can brush, the tokens "
                "of a span, and where each head sinks.")
        st.subheader("Downloads")
        ui.analysis_downloads(analysis)
        return
    frame = run_charts.token_frame(analysis)
    s = analysis.settings
    ui.show_chart(run_charts.tokens(analysis), f"run{analysis.run_id}-tokens",
                  "Each tile is one token (␣ a leading space, ↵ a newline, · a word continuation). Green: "
                  "beneficial (token 0), red: detrimental (high attention, small value vector), grey: neutral.")
    st.markdown("**Token 0 and the largest activation**")
    massive_badge.render(analysis)
    learned = analysis.mean_learned_sink_mass

    # Stacked with the same width per token, so a token's two bars line up.
    ui.show_chart(
        run_charts.received(analysis),
        f"run{analysis.run_id}-att-received",
        "Share of all attention each token receives, averaged over layers, heads and queries (sums to 1). "
        "Dashed line: τ_att."
        + (f" The dashed outline {SINK_COLUMN} is this model's learned sink: the mean attention mass "
           f"({learned:.4f}) that went to no token; the token bars are defined over real tokens only."
           if learned is not None else ""),
    )
    ui.show_chart(
        run_charts.value_norms(analysis),
        f"run{analysis.run_id}-value-norm",
        f"Norm of each token's value vector at layer {s.layer}, divided by the largest. Dashed line: τ_norm.",
    )

    left, right = st.columns([3, 2], gap="large")
    with left:
        ui.show_chart(
            run_charts.plane(analysis), f"run{analysis.run_id}-plane",
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

    run_grids.head_grid(analysis)
    run_grids.mean_maps(analysis)

    st.subheader("Downloads")
    ui.analysis_downloads(analysis)
    st.caption("Every chart above has its own PNG and SVG buttons.")


def opened_run():
    """The stored run in the URL (loaded into the form the first time), or None; errors are error boxes."""
    try:
        run_id = links.parse_run_id(st.query_params.get("run"))
        if run_id is None:
            return None
        services.store_or_stop()
        analysis = services.load_run(run_id)
    except SinkFixError as error:
        st.error(str(error))
        return None
    load_into_form(analysis)
    return analysis


st.title("Analyze")
shown = opened_run()
model, text, chosen, pressed = inputs(shown)
if pressed and chosen is not None:
    parent = shown.run_id if pressed == "rerun" and shown is not None else None
    done = services.run_analysis(text, model.name, chosen, parent_run_id=parent, device=model.device,
                                 dtype=model.dtype)
    if done is not None:
        st.query_params["run"] = str(done.run_id)
        st.session_state[LOADED] = done.run_id  # the form already holds what this run used
        shown = done
if shown is not None:
    st.caption(f"The form holds run {shown.run_id}'s model, text and settings: change a threshold and press "
               "Re-run with these settings to analyse the same text again.")
    results(shown)
