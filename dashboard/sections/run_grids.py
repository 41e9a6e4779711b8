"""The Analyze page's two grids of a run: which heads sink where (α of one token, or of each head's top
sink, and a learned sink's mass), and the attention averaged over layers and heads before and after the
correction. Layout only; the charts are ``sinkfix.plots.run``'s, which ``analysis.plot`` returns too."""
import numpy as np
import streamlit as st

from dashboard import ui
from sinkfix.analysis.display import SINK_COLUMN
from sinkfix.plots import analysis as charts, run as run_charts


def head_grid(analysis) -> None:
    st.subheader("Which heads sink where")
    s = analysis.settings
    labels = charts.token_axis_labels(analysis.tokens)
    default = int(np.argmax(analysis.sink_rate))
    left, right = st.columns([2, 3])
    mode = left.radio("Show", ["α of one token", "α of each head's top sink"], key="an_grid_mode")
    learned = analysis.learned_sink_mass
    choices = list(range(analysis.n_tokens)) + ([-1] if learned is not None else [])
    if mode == "α of one token":
        token = right.selectbox("Token", choices, index=default,
                                format_func=lambda j: f"{SINK_COLUMN} (learned sink, not a token)" if j < 0 else labels[j],
                                key=f"an_grid_token_{analysis.run_id}")
    if mode == "α of one token" and token < 0:
        ui.show_chart(run_charts.learned_sink_grid(analysis), f"run{analysis.run_id}-head-grid-sink",
                      "The attention each head gives to its learned sink logit (mean over queries): mass that "
                      "goes to no token. It is shown apart from the tokens' α, which stay defined over real tokens.")
        return
    if mode == "α of one token":
        chart = run_charts.token_alpha_grid(analysis, token)
        caption = (f"α[l,h,j]: attention token j receives in head (l, h), averaged over the queries that can see it. "
                   f"Sink rate of this token = share of heads with α > ε ({s.epsilon:g}) = "
                   f"{analysis.sink_rate[token]:.2f}.")
    else:
        chart = run_charts.top_sink_grid(analysis)
        caption = "For each head, the token with the largest α and its value; hover to see which token it is." + (
            f" The tooltip also gives the head's learned-sink mass ({SINK_COLUMN})." if learned is not None else "")
    ui.show_chart(chart, f"run{analysis.run_id}-head-grid", caption)


def mean_maps(analysis) -> None:
    st.subheader("Attention before and after correction")
    if analysis.mean_map is None:
        st.info(f"This run has {analysis.n_tokens} tokens, above the map limit of "
                f"{analysis.settings.map_token_limit}, so the full maps were not kept.")
        return
    sinks = ", ".join(charts.token_axis_labels(analysis.tokens)[i] for i in analysis.sink_indices)
    ui.show_chart(
        run_charts.mean_maps(analysis),
        f"run{analysis.run_id}-mean-maps",
        f"Rows are queries, columns the tokens they attend to. Corrected: detrimental sinks ({sinks}) keep "
        f"β = {analysis.settings.beta:g} of their attention and the rest is spread over the other tokens."
        if sinks else "No token is detrimental under these thresholds, so the corrected map equals the original. "
        "Lower τ_att or raise τ_norm to see a correction.",
    )
    if sinks:
        ui.show_chart(
            run_charts.mean_change(analysis),
            f"run{analysis.run_id}-mean-change",
            "Red: attention taken from the detrimental sinks; blue: where it went. Each row's changes sum to 0.",
        )
