"""Experiments page, layer-profile section: the 2025 findings (Mix-Compress-Refine's layer profile, and
the stored context-length sweeps, BOS ablations and secondary-sink studies beside it).

The profile runs from the form with progress and is saved with ``Store.save_experiment`` (kind
"profile"); the other three take minutes at their defaults and run from the command line (``sinkfix
lengths | bos | secondary``), which stores them the same way. Every stored one is listed below and opens
by deep link ``?finding=ID``: one chart with its 95% CI bands and n, and a sentence or table in words.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import services, ui, units
from dashboard.sections import experiment_store, model_picker, text_source
from sinkfix.analysis.display import show_token
from sinkfix.experiments import profile
from sinkfix.experiments.windows import shown as _ci
from sinkfix.plots import lengths as length_charts
from sinkfix.plots import profile as profile_charts
from sinkfix.plots import secondary as secondary_charts
from sinkfix.settings import BOS_MODES

KINDS = ("profile", "lengths", "bos", "secondary")
QUERY = "finding"
COMMANDS = ("sinkfix lengths [--lengths 64,128,...] [--windows N]    # sinks against the context length\n"
            "sinkfix bos [--lengths ...] [--windows N]              # with / without BOS, token 0 masked\n"
            "sinkfix secondary [--windows N] [--length T]           # sinks past token 0, and KVSink's predictor")


def _notes(result: dict) -> None:
    for note in result.get("notes", []):
        st.caption(note)


def _form() -> None:
    with st.form("profile_form"):
        model = model_picker.name_only("profile_model", "smollm2-135m")
        source = text_source.render("profile_file", "Corpus file (cut into windows)")
        cols = st.columns(4)
        windows = cols[0].number_input("Windows", 1, 512, profile.DEFAULT_WINDOWS, key="profile_windows",
                                       help="consecutive windows of the corpus: the unit of every CI")
        length = cols[1].number_input("Tokens per window", 8, 8192, profile.DEFAULT_LENGTH, key="profile_length")
        epsilon = cols[2].number_input("ε", 0.0, 1.0, 0.3, 0.05, key="profile_eps")
        bos = cols[3].selectbox("BOS", BOS_MODES, key="profile_bos",
                                help="auto: as the tokenizer does; always: prepend the model's BOS token")
        submitted = st.form_submit_button("Profile the layers", type="primary", key="profile_run")
    if not submitted:
        return

    def work(get, progress):
        read = text_source.read(source)  # a data-folder file or an upload, within the server's limit
        return profile.profile_corpus(get(model), read.text, read.name, int(windows), int(length), bos,
                                      float(epsilon), progress=progress)

    experiment_store.run_and_store("profile", f"Layer profile of {model}", work,
                                   lambda d: f"{d['model']} {d['source']} n={d['n_texts']}", QUERY)


def show_profile(result: dict, experiment_id: int) -> None:
    ui.show_chart(profile_charts.profile_chart(result), f"finding-{experiment_id}-profile",
                  f"Each line is the mean over {units.plural(result['n_texts'], 'text')}, its band the 95% bootstrap "
                  "CI over texts; grey columns: the layers where all three change together. Layer l is the output "
                  "of decoder layer l.")
    st.info(result["together"]["sentence"])  # SinkFix's own words and numbers, no user text
    rows = [{"layer": r["layer"], **{m: _ci(r.get(m), 3) for m in profile.METRICS}} for r in result["layers"]]
    with st.expander("Per layer (mean, 95% CI)"):
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(f"{result['model']} · {result['source']} · n = {result['n_texts']} · ε = {result['epsilon']} · "
               f"BOS {result['bos']}")
    _notes(result)


def show_lengths(result: dict, experiment_id: int) -> None:
    ui.show_chart(length_charts.lengths_chart(result), f"finding-{experiment_id}-lengths",
                  f"Mean over {units.plural(result['n_windows'], 'window')}, band: 95% bootstrap CI over windows. "
                  "Every length is the same windows cut to T.")
    trend = result["trend"]
    st.markdown(
        f"From T = {trend['from']} to {trend['to']} (paired per window): sink rate {_ci(trend['sink_rate'])}, "
        f"{trend['sink_rate_verdict']}; first-token mass {_ci(trend['first_token_mass'])}, "
        f"{trend['first_token_mass_verdict']}; second half of the queries {_ci(trend['late_first_token_mass'])}, "
        f"{trend['late_first_token_mass_verdict']}.")
    _notes(result)


def show_bos(result: dict, experiment_id: int) -> None:
    ui.show_chart(length_charts.bos_chart(result), f"finding-{experiment_id}-bos",
                  f"Mean over {units.plural(result['n_windows'], 'window')}; ΔNLL is paired per window; bands: 95% "
                  f"bootstrap CI over windows. BOS token: {ui.escape_md(show_token(result.get('bos_token') or units.MISSING))}.")
    rows = [{"T": r["length"], "comparison": name, "ΔNLL (nats)": _ci(c["delta_nll"], 4),
             "ΔNLL, second half": _ci(c.get("delta_nll_late"), 4), "Δ sink rate": _ci(c["delta_sink_rate"], 3)}
            for r in result["lengths"] for name, c in r["comparisons"].items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    _notes(result)


def show_secondary(result: dict, experiment_id: int) -> None:
    st.markdown(
        f"{len(result['sinks'])} secondary sinks among {result['n_candidates']:,} candidate positions "
        f"({result['n_windows']} windows of {result['length']} tokens; α > {result['epsilon']} in at least "
        f"{100 * result['share']:.0f}% of a layer's heads).")
    ui.show_chart(secondary_charts.layers_chart(result), f"finding-{experiment_id}-layers")
    ui.show_chart(secondary_charts.prediction_chart(result), f"finding-{experiment_id}-prediction",
                  "Pooled over candidates; whiskers: 95% bootstrap CI resampling windows. Precision is absent when "
                  "the predictor flags nothing.")
    tokens = [{"token": show_token(r["token"]), "kind": r["kind"], "sinks": r["sinks"], "occurrences": r["occurrences"],
               "rate": r["rate"], "layers": ", ".join(map(str, r["layers"])), "massive": r["massive"]}
              for r in result["by_token"]]
    st.dataframe(pd.DataFrame(tokens), hide_index=True)
    st.dataframe(pd.DataFrame(result["by_kind"]), hide_index=True)
    _notes(result)


def render() -> None:
    store = services.store_or_stop()
    st.subheader("Sinks across layers, lengths and positions")
    st.caption("Queipo-de-Llano et al. 2025: token 0's norm spikes, the sink rate nears 1 and the representation "
               "entropy drops in the same layers. Barbero et al. 2025: sinks and context length, and removing the "
               "BOS. KVSink: sinks past position 0, predicted by massive activations.")
    _form()
    st.caption("The other three run from the command line and appear below once stored:")
    st.code(COMMANDS, language="bash")
    experiment_store.open_from_query(store, QUERY, {"profile": show_profile, "lengths": show_lengths, "bos": show_bos,
                                                    "secondary": show_secondary}, "finding")
    st.markdown("**Stored findings**")
    experiment_store.stored_table(store, QUERY, KINDS, "finding",
                                  "profile: largest token-0 ÷ median norm; lengths: Sink₁ at the longest T; bos: ΔNLL of "
                                  "masking the BOS at the longest T; secondary: secondary sinks per window",
                                  "finding_stored")
