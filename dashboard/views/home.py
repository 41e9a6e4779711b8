"""Home: what SinkFix is, which models work here, the latest runs, and a one-click example."""
import streamlit as st

from dashboard import links, services, ui, units
from sinkfix import models

def model_status(name: str, model) -> str:
    """ready; converts on first use (installed, but SmolLM2's GGUF is not yet converted); or not installed."""
    if models.embedded_ready(name):
        return ":green-badge[ready]"
    if model.installed():
        return ":blue-badge[converts on first use (~20 s)]"
    return ":orange-badge[not installed]"


st.title("SinkFix")
st.markdown(
    "SinkFix finds **attention sinks** in transformer models: tokens such as `[CLS]`, `[SEP]` or a causal "
    "model's first token that soak up attention without carrying much information. "
    "It measures how much attention every token receives and how large its value vector is, and classifies "
    "each token as beneficial, detrimental or neutral. "
    "It then shows what the attention looks like when detrimental sinks are corrected by redistributing "
    "their attention to the other tokens, layer by layer and head by head."
)

left, right = st.columns([3, 2], gap="large")

with left:
    st.subheader("Try it")
    st.write("Analyse the seed example on the embedded MiniLM model:")
    st.code(services.SEED_TEXT, language=None, wrap_lines=True)
    if st.button("Run the example", type="primary", icon=":material/play_arrow:", key="run_example"):
        analysis = services.run_analysis(services.SEED_TEXT, models.DEFAULT_MODEL)
        if analysis is not None:
            st.switch_page(links.ANALYZE, query_params={"run": str(analysis.run_id)})
    st.page_link(links.ANALYZE, label="Analyze your own text", icon=":material/science:")

    st.subheader("Models that work here")
    for name, model in models.EMBEDDED.items():
        st.markdown(f"{model_status(name, model)} **{name}**: {model.description}")
        if not model.installed():
            st.caption(f"To install it: `{model.install}` (in a checkout, `make setup` does it).")
    st.caption(
        "Any Hugging Face hub id or local model directory also works when the hub is reachable or the "
        "model is in the local cache."
    )

with right:
    st.subheader("Latest runs")
    store = services.store_or_stop()
    latest = store.list(limit=8, viewer=services.viewer())
    if not latest:
        st.info("No runs yet. Run the example or analyse a text.")
    for row in latest:
        st.page_link(
            links.DRILLDOWN,
            label=f"#{row['id']} · {row['model']} · {ui.escape_md(ui.shorten(row['text'], 34))}",
            query_params=links.drilldown_query(row["id"]),
            icon=":material/grid_on:",
        )
    if latest:
        st.page_link(links.HISTORY, label="All runs", icon=":material/history:")

    st.subheader("Units on every page")
    st.markdown("\n".join(f"- **{name}**: {meaning}" for name, meaning in units.GLOSSARY.items()))
