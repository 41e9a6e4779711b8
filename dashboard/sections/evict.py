"""Experiments page, eviction section: KV-cache presses with and without sink protection.

A sweep runs from here with progress (one step per prompt), is saved with ``Store.save_experiment``
(kind "evict"), listed below, and opened by a deep link ``?evict=ID``. A stored sweep shows accuracy
against the ratio, the needle heatmap, the paired differences and which keys each press kept.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import services, ui, units
from dashboard.sections import experiment_store, model_picker
from sinkfix.errors import SettingsError
from sinkfix.experiments.evict import sweep
from sinkfix.experiments.evict.tasks import NLL_TASKS, TASKS
from sinkfix.plots import evict as evict_charts

KINDS = ("evict",)
QUERY = "evict"


def _numbers(raw: str, what: str, kind: type) -> tuple:
    try:
        values = tuple(kind(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{what} must be comma-separated numbers, got {raw!r}") from None
    if not values:
        raise SettingsError(f"give at least one value for {what}")
    return values


def _label(data: dict) -> str:
    lengths = ",".join(str(n) for n in data["settings"]["lengths"])
    return f"{data['model']} {data['task']} T={lengths} {len(data['prompts'])} prompts"


def _form() -> None:
    model = model_picker.name_only("ev_model", "smollm2-135m", "Model (causal LM)")
    with st.form("ev_form"):
        cols = st.columns(4)
        task = cols[0].selectbox("Task", list(TASKS), key="ev_task",
                                 help="passkey: noise filler; needle, multikey, ppl read tinyshakespeare (SINKFIX_DATA)")
        lengths = cols[1].text_input("Lengths (tokens)", "1024", key="ev_lengths")
        depths = cols[2].text_input("Depths", "0.1,0.5,0.9", key="ev_depths")
        seeds = cols[3].number_input("Seeds", 1, 64, 1, key="ev_seeds")
        cols = st.columns(3)
        chosen = cols[0].multiselect("Presses", list(sweep.DEFAULT_PRESSES), list(sweep.DEFAULT_PRESSES), key="ev_presses")
        ratios = cols[1].text_input("Ratios removed", "0.5,0.75", key="ev_ratios")
        protect = cols[2].text_input("Protection", "none,first:4,detected", key="ev_protect",
                                     help="none, first:N (the first N tokens) or detected (SinkFix's sinks, α > ε)")
        generate = st.checkbox("Score by greedy decoding (slower)", key="ev_generate")
        submitted = st.form_submit_button("Run the eviction sweep", type="primary", key="ev_run")
    if not submitted:
        return

    def work(get, progress):
        settings = sweep.SweepSettings(
            task=task, presses=tuple(chosen), ratios=_numbers(ratios, "ratios", float),
            protections=tuple(p.strip() for p in protect.split(",") if p.strip()),
            lengths=_numbers(lengths, "lengths", int), depths=_numbers(depths, "depths", float), seeds=int(seeds),
            generate=generate)  # validated before the model loads
        return sweep.run_sweep(get(model), settings, progress)

    experiment_store.run_and_store("evict", f"Eviction sweep on {model}", work, _label, QUERY)


def _results_frame(result: dict) -> pd.DataFrame:
    rows = []
    for press, by_ratio in result["results"].items():
        for ratio, by_protect in by_ratio.items():
            for protect, cell in by_protect.items():
                accuracy = cell["accuracy"] or {"mean": None, "ci95": [None, None]}
                rows.append({"press": press, "ratio": ratio, "protection": protect, "accuracy": accuracy["mean"],
                             "CI low": accuracy["ci95"][0], "CI high": accuracy["ci95"][1],
                             "ΔNLL (nats)": cell["nll_delta"]["mean"], "token 0 kept": cell["token0_kept"],
                             "protected": cell["protected"]})
    return pd.DataFrame(rows)


def _show(result: dict, experiment_id: int) -> None:
    nll = result["task"] in NLL_TASKS
    dense = result["dense"]
    cols = st.columns(3)
    if nll:
        cols[0].metric("Dense NLL", units.nats(dense["nll"]["mean"], signed=False))
    else:
        cols[0].metric("Dense accuracy", units.percent(dense["accuracy"]["mean"]),
                       help=f"95% Wilson interval {units.interval(*dense['accuracy']['ci95'], spec='.2f')}")
    cols[1].metric("Prompts", len(result["prompts"]))
    cols[2].metric("Time", f"{result['timing']['seconds']:.0f} s", help=f"{result['timing']['threads']} torch threads, "
                   f"{result['timing']['kernel']} statistics")
    ui.show_chart(evict_charts.accuracy_chart(result), f"evict-{experiment_id}-accuracy",
                  "Bands: 95% Wilson intervals over prompts (ΔNLL: bootstrap). Ratio 0 is the dense cache. Line "
                  "style: protection (none solid, first:N dotted, detected dashed).")
    if not nll and any(p["depth"] is not None for p in result["prompts"]):
        _heatmap(result, experiment_id)
    ui.show_chart(evict_charts.paired_forest(result), f"evict-{experiment_id}-paired",
                  "Each protection minus another on the same prompts; whiskers: paired-bootstrap 95% intervals. "
                  "Right of 0: the first named keeps more answers right" + (" (for NLL: left of 0 is better)." if nll else "."))
    if result.get("example"):
        _kept(result, experiment_id)
    st.dataframe(_results_frame(result), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.2f") for c in ("accuracy", "CI low", "CI high", "token 0 kept",
                                                                   "protected")} | {
        "ΔNLL (nats)": st.column_config.NumberColumn(format="%+.4f")})
    for note in result.get("notes", []):
        st.caption(note)


def _picks(result: dict, key: str, presses: list[str]) -> tuple[str, str, str]:
    settings = result["settings"]
    cols = st.columns(3)
    press = cols[0].selectbox("Press", presses, key=f"{key}_press")
    ratio = cols[1].selectbox("Ratio", settings["ratios"], key=f"{key}_ratio")
    protections = list(next(iter(next(iter(result["results"].values())).values())))
    protect = cols[2].selectbox("Protection", protections, key=f"{key}_protect")
    return press, ratio, protect


def _heatmap(result: dict, experiment_id: int) -> None:
    st.markdown("**Needle heatmap: depth × length**")
    press, ratio, protect = _picks(result, f"ev_heat_{experiment_id}", [*result["results"], evict_charts.DENSE])
    ui.show_chart(evict_charts.needle_heatmap(result, press, ratio, protect), f"evict-{experiment_id}-heatmap",
                  "Each cell: answers right over the seeds at that context length and needle depth.")


def _kept(result: dict, experiment_id: int) -> None:
    example = result["example"]
    prompt = example.get("prompt") or {}
    st.markdown("**Which keys each press kept**")
    key = f"ev_kept_{experiment_id}"
    cols = st.columns(3)
    ratio = cols[0].selectbox("Ratio", result["settings"]["ratios"], key=f"{key}_ratio")
    protections = list(next(iter(next(iter(result["results"].values())).values())))
    protect = cols[1].selectbox("Protection", protections, key=f"{key}_protect")
    head = cols[2].selectbox("KV head", list(range(example["shape"][1])), key=f"{key}_head")
    presses = [p for p in result["results"] if p in example["kept"]]
    ui.show_chart(evict_charts.kept_strips(example, presses, ratio, protect, int(head)), f"evict-{experiment_id}-kept",
                  f"One prompt ({prompt.get('length')} tokens, depth {prompt.get('depth')}, seed {prompt.get('seed')}): "
                  f"each row a layer, each column a context position. Orange/red: tokens SinkFix detects as sinks in "
                  f"that layer (α > {example['epsilon']}), kept/evicted; the black box is the needle.")


def render() -> None:
    store = services.store_or_stop()
    st.subheader("Sinks under KV-cache eviction")
    st.caption("kvpress's presses (StreamingLLM window, H2O, TOVA, SnapKV, PyramidKV, key norm, random) prune the "
               "context's cache after a dense prefill; the question is answered on what is left. Does the press keep "
               "the sink, and does protecting it (the first N tokens, or the sinks SinkFix detects) help?")
    _form()
    experiment_store.open_from_query(store, QUERY, {"evict": _show}, "eviction")
    st.markdown("**Stored eviction experiments**")
    experiment_store.stored_table(store, QUERY, KINDS, "eviction", "dense accuracy of the sweep's prompts", "ev_stored")
