"""Experiments page, long-context section: StreamingLLM windows with k sinks, and sink-preserving KV quantisation.

Each experiment runs from here with progress, is saved with ``Store.save_experiment`` (kinds
"streaming" and "kvquant"), listed below, and opened by a deep link ``?experiment=ID``.
"""
from __future__ import annotations

import streamlit as st

from dashboard.sections import experiment_store, model_picker, text_source
from dashboard import services, ui, units
from sinkfix.plots import longcontext as longcontext_charts
from sinkfix.errors import SettingsError
from sinkfix.experiments import kvquant, streaming

KINDS = ("streaming", "kvquant")
QUERY = "experiment"


def _model(key: str) -> str:
    return model_picker.name_only(key, "smollm2-135m", "Model (causal LM)")


def _ints(raw: str, what: str) -> list[int]:
    try:
        values = [int(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        raise SettingsError(f"{what} must be comma-separated whole numbers, got {raw!r}") from None
    if not values:
        raise SettingsError(f"give at least one value for {what}")
    return values


def _read(source: text_source.Source) -> str:
    return text_source.read(source).text  # only a data-folder file or an upload, within the server's limit


def _describe(kind: str, data: dict) -> str:
    if kind == "streaming":
        return f"{data['model']} {data['mode']} W={data['window']} T={data['n_tokens']}"
    return f"{data['model']} {data['n_chunks']}x{data['max_tokens']} tokens"


def _run(kind: str, label: str, work) -> int | None:
    return experiment_store.run_and_store(kind, label, work, lambda data: _describe(kind, data), QUERY)


def _streaming_form() -> None:
    model = _model("lc_model")  # outside the form, so choosing "Other" shows the path box at once
    with st.form("lc_stream_form"):
        source = text_source.render("lc_file")
        cols = st.columns(4)
        mode = cols[0].selectbox("Mode", ("masked", "stream", "recompute"), key="lc_mode",
                                 help="masked: one forward with a window mask; stream: rolling KV cache; "
                                      "recompute: sliding window re-encoded (the quality reference)")
        window = cols[1].number_input("Window W (recent R)", 1, 8192, 256, key="lc_window")
        tokens = cols[2].number_input("Tokens", 4, 65536, 2048, key="lc_tokens")
        sinks = cols[3].text_input("Sinks (k)", "0,1,2,4,8", key="lc_sinks")
        shift = st.selectbox("pos_shift (stream mode)", ("both", "on", "off"), key="lc_shift",
                             help="on: RoPE positions re-assigned inside the cache (token by token, slow on a CPU)")
        submitted = st.form_submit_button("Run the window experiment", type="primary", key="lc_run")
    if not submitted:
        return

    def work(get, progress):
        text, ks = _read(source), _ints(sinks, "sinks")
        loaded = get(model)
        if mode == "masked":
            return streaming.masked_window(loaded, text, int(window), ks, int(tokens), progress=progress)
        if mode == "stream":
            shifts = {"both": (True, False), "on": (True,), "off": (False,)}[shift]
            return streaming.stream_many(loaded, text, int(window), ks, shifts, int(tokens), progress=progress)
        return streaming.recompute(loaded, text, int(window), n_tokens=int(tokens), progress=progress)

    _run("streaming", f"{mode} window {window} on {model}", work)


def _kvquant_form() -> None:
    model = _model("lc_q_model")
    with st.form("lc_quant_form"):
        source = text_source.render("lc_q_file")
        cols = st.columns(4)
        bits = cols[0].text_input("Bits", "8,4,2", key="lc_q_bits")
        keep = cols[1].text_input("Keep (N or sinks)", "0,1,4,sinks", key="lc_q_keep")
        max_tokens = cols[2].number_input("Tokens per chunk", 8, 4096, kvquant.DEFAULT_MAX_TOKENS, key="lc_q_tokens")
        chunks = cols[3].number_input("Chunks", 1, 1000, 8, key="lc_q_chunks")
        submitted = st.form_submit_button("Run KV quantisation", type="primary", key="lc_q_run")
    if not submitted:
        return

    def work(get, progress):
        text = _read(source)  # before the model loads: a refused file costs nothing
        kept = [p.strip() if p.strip() == "sinks" else _ints(p, "keep")[0] for p in keep.split(",") if p.strip()]
        return kvquant.kv_quant(get(model), text, _ints(bits, "bits"), kept, max_tokens=int(max_tokens),
                                max_chunks=int(chunks), progress=progress)

    _run("kvquant", f"KV quantisation on {model}", work)


def _show_streaming(result: dict, experiment_id: int) -> None:
    if any(r.get("sinks") is not None for r in result["settings"]):
        ui.show_chart(longcontext_charts.sinks_chart(result), f"longcontext-{experiment_id}-sinks",
                      longcontext_charts.sinks_caption(result))
    ui.show_chart(longcontext_charts.curve_chart(result), f"longcontext-{experiment_id}-curves",
                  longcontext_charts.curve_caption(result))
    rough = longcontext_charts.rough_ci_note(result)
    if rough:
        st.warning(rough)
    st.dataframe(longcontext_charts.stream_frame(result), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.2f") for c in ("ppl", "CI low", "CI high", "ppl past trained")} | {
        "ΔNLL vs dense (nats)": st.column_config.NumberColumn(format="%+.4f")})
    st.caption(f"{result['model']} · {result['mode']} · window {result['window']} · T = {result['n_tokens']} · "
               f"{result['n_positions']} positions · CI unit: {result['ci_unit']} · perplexity is a plain number, "
               "ΔNLL in nats per token")
    for note in result.get("notes", []):
        st.caption(note)


def _show_kvquant(result: dict, experiment_id: int) -> None:
    ui.show_chart(longcontext_charts.quant_chart(result), f"longcontext-{experiment_id}-kvquant",
                  "Whiskers: 95% paired bootstrap CI over chunks of the change in NLL (nats per token) against the "
                  "unquantised model.")
    rough = longcontext_charts.rough_ci_note(result)
    if rough:
        st.warning(rough)
    st.dataframe(longcontext_charts.quant_frame(result).rename(columns={
        "delta_nll": "ΔNLL (nats)", "low": "CI low", "high": "CI high"}), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%+.4f") for c in ("ΔNLL (nats)", "CI low", "CI high")} | {
        "ppl": st.column_config.NumberColumn(format="%.2f")})
    st.caption(f"{result['model']} · {units.plural(result['n_chunks'], 'chunk')} of {result['max_tokens']} tokens · "
               f"group {result['group']} · unquantised ppl {units.ppl(result['dense_ppl'])}")


def render() -> None:
    store = services.store_or_stop()
    st.subheader("Sinks in long-context inference")
    st.caption("StreamingLLM (Xiao et al., ICLR 2024): window attention breaks without the first tokens; keeping a "
               "few sinks restores it. IntactKV / KVSink: keep sink tokens' K/V in full precision when quantising.")
    window_col, quant_col = st.columns(2)
    with window_col:
        st.markdown("**Window attention with k sinks**")
        _streaming_form()
    with quant_col:
        st.markdown("**KV quantisation**")
        _kvquant_form()
    experiment_store.open_from_query(store, QUERY, {"streaming": _show_streaming, "kvquant": _show_kvquant},
                                     "long-context")
    st.markdown("**Stored long-context experiments**")
    experiment_store.stored_table(store, QUERY, KINDS, "long-context",
                                  "streaming: best perplexity; kvquant: largest ΔNLL", "lc_stored")
