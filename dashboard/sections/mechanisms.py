"""Experiments page, mechanisms section: the Gu et al. sink-rate protocol and massive activations.

Each experiment runs from here with progress, is saved with ``Store.save_experiment`` (kinds
"sinkrate" and "massive"), listed below, and opened by a deep link ``?mechanism=ID``.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.sections import experiment_store, model_picker, text_source
from dashboard import services, ui, units, visitors
from sinkfix.plots import mechanisms as mechanism_charts
from sinkfix.analysis.display import show_token
from sinkfix.experiments import massive, sinkrate
from sinkfix.settings import BOS_MODES

KINDS = ("sinkrate", "massive")
QUERY = "mechanism"
DEFAULT_TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
                "First Citizen:\nYou are all resolved rather to die than to famish?")
BOS_HELP = "auto: as the tokenizer does; always: prepend the model's BOS token (SmolLM2 adds none); never: drop it"


def _model(key: str, default: str) -> str:
    return model_picker.name_only(key, default)


def _run(kind: str, label: str, work) -> int | None:
    return experiment_store.run_and_store(kind, label, work, lambda data: _label(kind, data), QUERY)


def _label(kind: str, data: dict) -> str:
    if kind == "sinkrate":
        return f"{data['model']} n={data['n']} T={data['length']} bos={data['bos']}"
    return f"{data['model']} {len(data['tokens'])} tokens bos={data['bos']}"


# ---------------------------------------------------------------- forms


def _sinkrate_form() -> None:
    with st.form("mech_sinkrate_form"):
        model = _model("mech_sr_model", "smollm2-135m")
        source = text_source.render("mech_sr_file", "Text file for natural sequences")
        cols = st.columns(4)
        n = cols[0].number_input("Sequences per kind", 2, 1000, 100, key="mech_sr_n")
        length = cols[1].number_input("Tokens per sequence", 4, 4096, 64, key="mech_sr_length")
        epsilon = cols[2].number_input("ε", 0.0, 1.0, 0.3, 0.05, key="mech_sr_eps")
        bos = cols[3].selectbox("BOS", BOS_MODES, key="mech_sr_bos", help=BOS_HELP)
        submitted = st.form_submit_button("Run the sink-rate protocol", type="primary", key="mech_sr_run")
    if not submitted:
        return

    def work(get, progress):
        read = text_source.read(source)  # only a data-folder file or an upload, within the server's limit
        # The stored result names the file as the page does (never a server path).
        return sinkrate.sink_rate_protocol(get(model), n=int(n), length=int(length), epsilon=float(epsilon),
                                           text_file=read.name, text=read.text, bos=bos, progress=progress)

    _run("sinkrate", f"Sink-rate protocol on {model}", work)


# Page choice -> the core's arms; "zero and mean" without a reference on one chunk is refused by the core.
ARM_CHOICES = {"zero": ("zero",), "zero and mean": ("zero", "mean"), "none": ()}


def _massive_form() -> None:
    with st.form("mech_massive_form"):
        model = _model("mech_ma_model", "smollm2-135m")
        text = st.text_area("Text", DEFAULT_TEXT, key="mech_ma_text", height=120)
        cols = st.columns(3)
        max_tokens = cols[0].number_input("Tokens analysed (and per chunk)", 4, 4096, massive.DEFAULT_MAX_TOKENS,
                                          key="mech_ma_tokens")
        bos = cols[1].selectbox("BOS", BOS_MODES, key="mech_ma_bos", help=BOS_HELP)
        arms = cols[2].selectbox(
            "Intervention (causal LM head)", list(ARM_CHOICES), key="mech_ma_arms",
            help="Set the massive entries to zero, or also to their mean. The mean needs a reference text (or a "
                 "text of two or more chunks): with one chunk of the evaluated text the mean is the value itself.")
        reference = st.text_area("Reference text for the mean (optional)", "", key="mech_ma_reference", height=68,
                                 help="Another text whose massive entries give the mean values.")
        submitted = st.form_submit_button("Find massive activations", type="primary", key="mech_ma_run")
    if submitted:
        chosen = ARM_CHOICES[arms]

        def work(get, progress):
            visitors.check_texts(text)  # the server's text limit, before any model loads
            if reference.strip():
                visitors.check_texts(reference)
            return massive.massive_activations(get(model), text, [reference] if reference.strip() else None,
                                               intervene=bool(chosen), max_tokens=int(max_tokens), bos=bos,
                                               progress=progress, arms=chosen or massive.ARMS)

        _run("massive", f"Massive activations on {model}", work)


# ---------------------------------------------------------------- showing a stored result


def _show_sinkrate(result: dict, experiment_id: int) -> None:
    ui.show_chart(mechanism_charts.sinkrate_bars(result), f"mechanism-{experiment_id}-sinkrate",
                  "Token 0 is Gu et al.'s Sink₁ (they count from 1). Whiskers: 95% bootstrap CI over sequences. "
                  "Paper bars: Llama-3-8B and GPT-2-XL as published (no CI given).")
    ui.show_chart(mechanism_charts.sinkrate_layers(result), f"mechanism-{experiment_id}-layers")
    rows = [{"kind": k, "Sink₁ %": 100 * r["rate"], "CI low %": 100 * r["ci95"][0], "CI high %": 100 * r["ci95"][1],
             "Sink at index 1 %": 100 * r["per_position"][1] if len(r["per_position"]) > 1 else None,
             "first tokens": " ".join(show_token(t) for t in r["example"][:6])} for k, r in result["kinds"].items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.1f") for c in ("Sink₁ %", "CI low %", "CI high %",
                                                                   "Sink at index 1 %")})
    st.caption(f"{result['model']} · n = {result['n']} · T = {result['length']} · ε = {result['epsilon']} · "
               f"BOS {result['bos']} · seed {result['seed']}")


def _show_massive(result: dict, experiment_id: int) -> None:
    top = result["top"]
    cols = st.columns(3)
    cols[0].metric("Largest |h|", f"{top['max_abs']:,.0f}", help=f"signed value {top['value']:,.1f}")
    cols[1].metric("Ratio to median |h|", units.ratio(top["ratio"]))
    cols[2].metric("Token", f"#{top['token']}", help="the token's text is on the line below")
    st.markdown(f"**Where:** layer {top['layer']}, feature dim {top['dim']}, token #{top['token']} "
                f"{ui.escape_md(show_token(top['token_text']))}")
    if result["first_massive_layer"] is None:
        st.caption("No entry is massive by Sun et al.'s rule (|h| > 100 and > 1000 × the layer's median |h|).")
    else:
        st.caption(f"Massive (|h| > 100 and > 1000 × median, Sun et al.) from layer {result['first_massive_layer']}, "
                   f"dims {', '.join(map(str, result['massive_dims']))}.")
    ui.show_chart(mechanism_charts.peak_heatmap(result["peak"], result["tokens"]), f"mechanism-{experiment_id}-peak",
                  "Each cell: the largest |h| over feature dims at that layer's output (log colour).")
    ui.show_chart(mechanism_charts.top_features(result["top_features"]), f"mechanism-{experiment_id}-features",
                  "Each bar: one (token, dim) entry at the layer where it peaks, from the axis' lower edge to its |h| "
                  "(log scale); the number is its |h|.")
    link = result["link"]
    st.caption(f"Spearman of a token's peak |h| with its sink rate: {_fmt(link['spearman_sink_rate'])}; "
               f"with its value norm (layer {link['value_norm_layer']}): {_fmt(link['spearman_value_norm'])}.")
    if result.get("intervention"):
        _show_intervention(result["intervention"], experiment_id)
    with st.expander("Per layer"):
        st.dataframe(pd.DataFrame(result["layers"]), hide_index=True)
    for note in result.get("notes", []):
        st.caption(note)


def _show_intervention(iv: dict, experiment_id: int) -> None:
    ui.show_chart(mechanism_charts.intervention_bars(iv), f"mechanism-{experiment_id}-intervention",
                  f"{units.plural(iv['n_chunks'], 'chunk')} of up to {iv.get('max_tokens')} tokens; means from "
                  f"{iv['reference']}; 95% paired bootstrap CI.")
    st.dataframe(pd.DataFrame([{"set to": name, "NLL before (nats)": a["baseline_nll"],
                                "NLL after (nats)": a["intervened_nll"], "ΔNLL (nats)": a["delta_nll"],
                                "CI low": a["ci95"][0], "CI high": a["ci95"][1],
                                "ppl before": a["baseline_ppl"], "ppl after": a["intervened_ppl"]}
                               for name, a in iv["arms"].items()]), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%+.4f") for c in ("ΔNLL (nats)", "CI low", "CI high")} | {
        c: st.column_config.NumberColumn(format="%.4f") for c in ("NLL before (nats)", "NLL after (nats)")} | {
        c: st.column_config.NumberColumn(format="%.2f") for c in ("ppl before", "ppl after")})
    if "mean" in iv["arms"] and iv.get("reference") == "the evaluated text" and iv.get("n_chunks") == 1:
        st.warning("This result was stored before SinkFix refused it: its mean arm took the means from the one "
                   "chunk it edits, so each mean is the value itself and ΔNLL is 0 by construction. Run it again "
                   "with a reference text.")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def render() -> None:
    store = services.store_or_stop()
    st.subheader("Why sinks form")
    st.caption("Gu et al. (ICLR 2025): the first token's sink rate on natural, random and repeated tokens. "
               "Sun et al. (COLM 2024): a few residual features reach 10⁴× the median on the sink token.")
    protocol, activations = st.columns(2)
    with protocol:
        st.markdown("**Sink-rate protocol**")
        _sinkrate_form()
    with activations:
        st.markdown("**Massive activations**")
        _massive_form()
    experiment_store.open_from_query(store, QUERY, {"sinkrate": _show_sinkrate, "massive": _show_massive},
                                     "mechanism")
    st.markdown("**Stored mechanism experiments**")
    experiment_store.stored_table(store, QUERY, KINDS, "mechanism",
                                  "sinkrate: Sink₁ of the first kind (%); massive: the largest |h| ÷ median |h| (×)", "mech_stored")
