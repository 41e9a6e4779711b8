"""Analyze page: the run's top massive activation, shown next to token 0 (owned by the mechanisms work).

One forward of the transformer body on the run's own token ids (no re-tokenization, so BOS settings
carry over), cached per model and text with ``st.cache_data``; the full study is on the Experiments page.
"""
from __future__ import annotations

import streamlit as st

from dashboard import services, ui, units
from sinkfix.analysis.display import show_token
from sinkfix.analysis.result import Analysis
from sinkfix.errors import SinkFixError
from sinkfix.experiments.massive_detect import top_activation


@st.cache_data(show_spinner=False, max_entries=64)
def summary(model_name: str, fingerprint: str, text: str, token_ids: tuple[int, ...], tokens: tuple[str, ...]) -> dict:
    """Keyed by model (name and weights fingerprint) and text; the ids and tokens come with the text."""
    loaded = services.model_shelf().get(model_name)
    return top_activation(loaded, token_ids, tokens)


def render(analysis: Analysis) -> None:
    """Show the largest residual-stream activation of the analysed text (layer, token, dim, ratio).

    When the run's model is not loaded in this server (a stored run opened from History), nothing loads
    until the user asks: opening a stored run stays free of model loads.
    """
    key = f"massive_badge_{analysis.model_name}_{analysis.fingerprint}_{hash(analysis.text)}"
    shown: set = st.session_state.setdefault("_massive_badge_shown", set())
    if key not in shown and analysis.model_name not in services.model_shelf().loaded():
        if not st.button(f"Find the largest activation (loads {analysis.model_name})", key=key,
                         icon=":material/bolt:"):
            st.caption("The largest residual-stream activation needs one forward pass of the model.")
            return
    shown.add(key)
    try:
        data = summary(analysis.model_name, analysis.fingerprint, analysis.text, tuple(analysis.token_ids),
                       tuple(analysis.tokens))
    except SinkFixError as error:
        st.caption(f"Massive activation unavailable: {error}")
        return
    top, first = data["top"], data["token0"]
    verdict = "massive by Sun et al.'s rule (|h| > 100 and > 1000× median)" if top["massive"] else "below Sun et al.'s massive rule"
    with st.container(border=True):
        # Short values only: a tile cuts a long one ("L11 · #0 · dim 14…"); where it is goes in the caption too.
        cols = st.columns(4)
        cols[0].metric("Top |h|", f"{top['max_abs']:,.0f}", help="largest residual-stream activation over all layers")
        cols[1].metric("Layer", top["layer"])
        cols[2].metric("Feature dim", top["dim"])
        cols[3].metric("Ratio to median", units.ratio(top["ratio"]))
        st.caption(
            f"Top token: #{top['token']} {ui.escape_md(show_token(top['token_text']))} — {verdict}. "
            f"Token 0 ({ui.escape_md(show_token(first['token_text']))}) peaks at |h| {first['max_abs']:,.0f} "
            f"(layer {first['layer']}, dim {first['dim']}, {first['ratio']:,.0f}× the median). "
            "Full study: Experiments → Mechanisms."
        )
