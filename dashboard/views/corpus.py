"""Corpus: a batch of runs (``python -m sinkfix batch FILE``) summarised over all its inputs. ``?corpus=NAME``.

Shows the per-head sink-rate heatmap and the token types that sink most often (definitions in
sinkfix.analysis.corpus), and links every input's run to the drill-down and any two of them to Compare.
It stays fast at 100k inputs: the summary is the stored JSON (no blob is decoded, no per-token row
read), and the inputs table is one page of ``PAGE_SIZE`` lines read with LIMIT/OFFSET on the
(corpus_id, line_no) primary key.
"""
from collections import Counter

import pandas as pd
import streamlit as st

from dashboard import links, services, sharing, ui, units
from sinkfix.plots import analysis as charts
from sinkfix.analysis.display import show_token
from sinkfix.analysis.corpus import FIRST_TOKEN, CorpusSummary, summarize_stored
from sinkfix.errors import SinkFixError

PAGE_SIZE = 100  # lines per page of the inputs table
TYPE_COLUMNS = ["token", "sinks", "occurrences", "sink_share", "inputs", "mean_sink_rate", "mean_value_norm",
                "detrimental", "examples"]


def corpus_table(rows: list[dict]) -> None:
    frame = pd.DataFrame(rows, columns=["name", "model", "n_runs", "created_at", "source", "owner", "shared"])
    frame["created_at"] = [units.when(t) for t in frame["created_at"]]
    frame["source"] = frame["source"].fillna(units.MISSING)
    st.dataframe(frame, hide_index=True, column_config={
        "n_runs": st.column_config.NumberColumn("inputs", width="small"),
        "created_at": st.column_config.TextColumn("created")})


def summary_of(store, corpus: dict) -> CorpusSummary:
    if corpus["summary"]:
        return CorpusSummary.from_json(corpus["summary"])
    st.warning("This corpus's batch did not finish (or is still running): the summary below covers the lines "
               "stored so far. Rerun the same `python -m sinkfix batch` command to complete it.")
    return summarize_stored(store, corpus["id"], corpus["settings"]["epsilon"], viewer=services.viewer())


def overview(corpus: dict, summary: CorpusSummary) -> None:
    s = corpus["settings"]
    st.markdown(f"**Model:** {ui.escape_md(corpus['model'])}")  # text, not a tile: a tile cuts a long name
    cols = st.columns(3)
    cols[0].metric("Inputs", summary.n_inputs)
    cols[1].metric("With a detrimental sink", f"{summary.detrimental_fraction:.0%}",
                   help=f"{summary.n_detrimental_inputs} of {summary.n_inputs} inputs have at least one token "
                        "the rule labels detrimental.")
    every = int((summary.head_sink_rate == 1).sum()) if summary.head_sink_rate.size else 0
    cols[2].metric("Heads that sink on every input", f"{every} of {summary.head_sink_rate.size}")
    st.caption(f"Source `{corpus['source'] or '?'}` · created {units.when(corpus['created_at'])} · value-norm layer {s['layer']} · "
               f"τ_att {s['tau_att']:g} · τ_norm {s['tau_norm']:g} · β {s['beta']:g} · ε {s['epsilon']:g}")


def heads(corpus: dict, summary: CorpusSummary) -> None:
    st.subheader("Sink rate per head")
    if not summary.head_sink_rate.size:
        st.info("No runs in this corpus yet.")
        return
    ui.show_chart(
        charts.corpus_sink_grid(summary.head_sink_rate, summary.head_mean_top_alpha, summary.epsilon,
                                summary.n_inputs),
        f"corpus-{corpus['id']}-sink-rate",
        f"Each cell is the fraction of the corpus's inputs in which that head gives some token an α above "
        f"ε = {summary.epsilon:g} (α: the attention a token receives, averaged over the queries that can see it). "
        "Hover for the mean top α.",
    )


def token_types(corpus: dict, summary: CorpusSummary) -> None:
    st.subheader("Token types that sink most often")
    st.caption("A token occurrence sinks when at least one head gives it α > ε. Every first token counts as "
               "`<first token>`; the rest are grouped by text. Mean sink rate and mean value norm are over the "
               "occurrences that sink.")
    if not summary.token_types:
        st.info("No token has α > ε in any head of any input.")
        return
    frame = pd.DataFrame([t.to_dict() for t in summary.token_types], columns=TYPE_COLUMNS)
    frame["token"] = [t if t == FIRST_TOKEN else show_token(t) for t in frame["token"]]  # a group, not a token
    frame["examples"] = frame["examples"].map(", ".join)
    st.dataframe(frame, hide_index=True, key="co_types", column_config={
        "sink_share": st.column_config.NumberColumn("sink share", format="%.2f"),
        "inputs": st.column_config.NumberColumn("inputs", help="inputs in which this type sinks at least once"),
        "mean_sink_rate": st.column_config.NumberColumn("mean Sink_j", format="%.3f"),
        "mean_value_norm": st.column_config.NumberColumn("mean value norm", format="%.3f"),
    })
    ui.show_chart(charts.sink_token_bars(frame), f"corpus-{corpus['id']}-sink-tokens")


def runs(store, corpus: dict) -> None:
    """One page of the corpus's lines, read with LIMIT/OFFSET, so a 100k-line corpus loads as fast as a small one."""
    st.subheader("Inputs")
    total = store.corpus_size(corpus["id"], viewer=services.viewer())
    pages = max(1, -(-total // PAGE_SIZE))
    page = 1
    if pages > 1:
        page = int(st.number_input(f"Page (of {pages}, {PAGE_SIZE} lines each)", 1, pages, step=1, key="co_page"))
    rows = store.corpus_runs(corpus["id"], limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, viewer=services.viewer())
    frame = pd.DataFrame(rows, columns=["line_no", "run_id", "text", "n_tokens", "n_beneficial", "n_detrimental",
                                        "n_neutral", "has_maps"])
    frame["has_maps"] = frame["has_maps"].astype(bool)
    frame["text"] = frame["text"].map(lambda t: ui.shorten(t, 120))
    frame["open"] = frame["run_id"].map(lambda i: links.url(links.DRILLDOWN, links.drilldown_query(int(i))))
    st.dataframe(frame, hide_index=True, key="co_runs", column_config={
        "line_no": st.column_config.NumberColumn("line", width="small"),
        "run_id": st.column_config.NumberColumn("run", width="small"),
        "text": st.column_config.TextColumn("text", width="large"),
        **ui.count_columns(),
        "has_maps": st.column_config.CheckboxColumn(
            "maps", width="small", help="Corpus runs keep summaries only by default; the drill-down can recompute maps."),
        "open": st.column_config.LinkColumn("drill-down", display_text="open"),
    })
    if len(rows) < 2:
        return
    names = {r["run_id"]: f"line {r['line_no']} · run {r['run_id']} · {ui.shorten(r['text'], 50)}" for r in rows}
    ids = list(names)
    left, right, go = st.columns([2, 2, 1], vertical_alignment="bottom")
    first = left.selectbox("Compare", ids, index=0, format_func=names.get, key="co_first")
    second = right.selectbox("with", ids, index=1, format_func=names.get, key="co_second")
    if first == second:
        go.caption("Pick two different inputs.")
    else:
        go.page_link(links.COMPARE, label="Compare", icon=":material/compare_arrows:",
                     query_params=links.compare_query([first, second]))


def picker_keys(rows: list[dict], viewer_name: str) -> dict[str, tuple[str, str]]:
    """Picker entry -> (name, owner). Names are per owner: a name held by one owner is its own entry (the
    deep link ``?corpus=NAME``); where several owners' corpora share it, the visitor's own keeps the plain
    name and the others read "NAME (owner)"."""
    holders = Counter(row["name"] for row in rows)
    keys: dict[str, tuple[str, str]] = {}
    for row in sorted(rows, key=lambda r: r["owner"] != viewer_name):  # stable: own first, then newest first
        name, owner = row["name"], row["owner"]
        plain = holders[name] == 1 or owner == viewer_name
        keys.setdefault(name if plain else f"{name} ({owner})", (name, owner))
    return keys


st.title("Corpus")
st.caption("Sink statistics over a whole corpus: one stored run per input line, made with "
           "`python -m sinkfix batch FILE --model NAME`.")
store = services.store_or_stop()
try:
    rows = store.corpora(viewer=services.viewer())
    if not rows:
        st.info("No corpora yet. Analyse a file with one input per line (or JSONL with a \"text\" field): "
                "`python -m sinkfix batch inputs.txt --model minilm`.")
        st.stop()
    corpus_table(rows)
    keys = picker_keys(rows, services.viewer().name)
    names = list(keys)
    asked = st.query_params.get("corpus")
    if asked and asked not in names and "corpus" not in st.session_state:
        # A bad link is an error, never a silent switch to the first corpus.
        st.error(f"No corpus is named '{asked}'. Stored corpora: {', '.join(names)}.")
        st.page_link(links.CORPUS, label=f"Open the corpus {names[0]}", icon=":material/library_books:",
                     query_params={"corpus": names[0]})
        st.stop()
    name, owner = keys[st.selectbox("Corpus", names, key="corpus", bind="query-params")]
    corpus = store.corpus(name, viewer=services.viewer(), owner=owner)
    sharing.control("corpus", name, owner=owner)
    summary = summary_of(store, corpus)
    overview(corpus, summary)
    heads(corpus, summary)
    token_types(corpus, summary)
    runs(store, corpus)
except SinkFixError as error:
    st.error(str(error))
