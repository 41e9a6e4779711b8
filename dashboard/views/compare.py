"""Compare 2 to 4 runs: same text on different models, or different texts on one model. ``?runs=ID1,ID2``.

Runs of one text are aligned by the characters each token covers and shown per word, so two
tokenizers line up; every set of runs gets per-layer curves on a relative depth axis.
"""
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import links, services, ui
from sinkfix.plots import analysis as charts, compare as compare_charts, run as run_charts
from sinkfix.analysis.display import show_token
from sinkfix.analysis.align import AlignmentError, align
from sinkfix.errors import SinkFixError

HEAD_METRICS = {"top_alpha": "α of the top sink", "entropy": "entropy", "token0_share": "token-0 share"}
FIELDS = {"att_received": "attention received", "value_norm": "value norm", "sink_rate": "sink rate"}


def _pick_recent() -> None:
    st.session_state.runs = links.join_run_ids(st.session_state.cmp_recent)


def choose_runs(store) -> list[int]:
    left, right = st.columns([1, 3])
    left.text_input("Run ids", key="runs", bind="query-params", placeholder="e.g. 1,2",
                    help=f"2 to {links.MAX_COMPARE} run ids, separated by commas.")
    recent = store.list(limit=40, viewer=services.viewer())
    if recent:
        # Ascending ids, prefix matching and no "Select all matches" entry: typing "#3" and Enter picks
        # run 3 alone (it used to pick "2 matches": #3 and #31).
        names = {r["id"]: f"#{r['id']} · {r['model']} · {ui.shorten(r['text'], 50)}"
                 for r in sorted(recent, key=lambda r: r["id"])}
        right.multiselect("or pick recent runs", list(names), key="cmp_recent", on_change=_pick_recent,
                          format_func=names.get, max_selections=links.MAX_COMPARE, placeholder="recent runs",
                          filter_mode="prefix", select_all=False)
    return links.parse_run_ids(st.session_state.get("runs"))


def overview_frame(analyses) -> pd.DataFrame:
    """One line per run: what it is and the settings its labels come from (two runs' labels can differ
    only because their thresholds do)."""
    return pd.DataFrame([{
        "run": a.run_id, "model": a.model_name, "tokens": a.n_tokens,
        "τ_att": f"{a.settings.tau_att:g}", "τ_norm": f"{a.settings.tau_norm:g}", "β": f"{a.settings.beta:g}",
        "ε": f"{a.settings.epsilon:g}", "norm layer": a.settings.layer,
        **{label: a.label_counts().get(label, 0) for label in ("beneficial", "detrimental", "neutral")},
        "text": ui.shorten(a.text, 80),
    } for a in analyses])


def overview(analyses) -> None:
    st.dataframe(overview_frame(analyses), hide_index=True)
    differing = sorted({name for a in analyses[1:] for name in ui.settings_changes(analyses[0].settings, a.settings)})
    if differing:
        st.caption("The runs' settings differ (" + "; ".join(differing) + "), so their labels are not comparable "
                   "one to one: the seed rule labels tokens by each run's own τ_att and τ_norm.")
    cols = st.columns(len(analyses))
    for col, a in zip(cols, analyses):
        col.page_link(links.DRILLDOWN, label=f"Drill into run {a.run_id}", icon=":material/grid_on:",
                      query_params=links.drilldown_query(a.run_id))


def alignment_note(analyses) -> None:
    token_lists = [a.tokens for a in analyses]
    if all(t == token_lists[0] for t in token_lists):
        st.success(f"All runs have the same {len(token_lists[0])} tokens, so positions line up exactly.")
        return
    first = next(
        (i for i in range(max(map(len, token_lists))) if len({t[i] if i < len(t) else None for t in token_lists}) > 1),
        0,
    )
    at_first = ", ".join(
        f"run {a.run_id}: {ui.escape_md(show_token(a.tokens[first])) if first < a.n_tokens else '(none)'}"
        for a in analyses
    )
    lengths = ", ".join(f"run {a.run_id}: {a.n_tokens}" for a in analyses)
    same_text = len({a.text for a in analyses}) == 1
    st.warning(f"The token lists differ (lengths {lengths}). They first differ at position {first} ({at_first}). "
               + ("The bars below are aligned by position; the same text is also aligned by words further down."
                  if same_text else "The texts differ too, so runs are aligned by position only."))


def sinks_table(analyses) -> pd.DataFrame:
    rows = []
    for a in analyses:
        for row in a.token_table():
            if row["label"] != "neutral" or row["att_received"] >= a.settings.tau_att or row["sink_rate"] > 0:
                rows.append({"run": a.run_id, "model": a.model_name, **row, "token": show_token(row["token"])})
    return pd.DataFrame(rows, columns=["run", "model", "index", "token", "label", "att_received", "value_norm",
                                       "sink_rate"])


def head_values(store, run_id: int, metric: str, shape: tuple[int, int]) -> np.ndarray:
    grid = np.zeros(shape)
    for row in store.head_rows(run_id, viewer=services.viewer()):
        grid[row["layer"], row["head"]] = row[metric] if row[metric] is not None else np.nan
    return grid


def differences(store, analyses) -> None:
    st.subheader("Per-head differences")
    base = analyses[0]
    same = [a for a in analyses[1:] if (a.model_name, a.n_layers, a.n_heads) ==
            (base.model_name, base.n_layers, base.n_heads)]
    others = [a for a in analyses[1:] if a not in same]
    if others:
        st.info(f"Per-head differences need runs of the same model as run {base.run_id} ({base.model_name}); "
                + ", ".join(f"run {a.run_id} is {a.model_name}" for a in others) + ".")
    if not same:
        return
    metric = st.selectbox("Metric", list(HEAD_METRICS), format_func=HEAD_METRICS.get, key="cmp_metric")
    shape = (base.n_layers, base.n_heads)
    base_grid = head_values(store, base.run_id, metric, shape)
    cols = st.columns(min(len(same), 3))
    for col, other in zip(cols * 2, same):
        with col:
            ui.show_chart(
                charts.difference_grid(base_grid, head_values(store, other.run_id, metric, shape), metric,
                                       f"run {other.run_id} − run {base.run_id}"),
                f"diff-{metric}-{other.run_id}-{base.run_id}",
            )
    st.caption(f"{HEAD_METRICS[metric]} of each later run minus run {base.run_id}, per layer and head. "
               "Orange: higher in the later run; blue: lower.")


def word_alignment(analyses) -> None:
    """Runs of one text, aligned by the characters their tokens cover and shown per word."""
    st.subheader("Aligned by words")
    if len({a.text for a in analyses}) > 1:
        st.info("Word alignment needs runs of the same text; these runs analysed different texts.")
        return
    spans = [services.offsets_for(a) for a in analyses]
    missing = [a.run_id for a, s in zip(analyses, spans) if s is None]
    if missing:
        st.info(f"Run(s) {', '.join(map(str, missing))} carry no token spans, and tokenizing the text again with "
                "their model's tokenizer did not give the same tokens, so they cannot be aligned by words.")
        return
    try:
        alignment = align(analyses[0].text, spans, [a.tokens for a in analyses])
    except AlignmentError as error:
        st.info(f"These runs cannot be aligned by words: {error}")
        return
    field = st.radio("Per-word value", list(FIELDS), format_func=FIELDS.get, horizontal=True, key="cmp_word_field")
    frame = compare_charts.aligned_frame(analyses, alignment)
    ids = "-".join(str(a.run_id) for a in analyses)
    ui.show_chart(compare_charts.aligned_bars(frame, field), f"compare-words-{field}-{ids}",
                  "Each group is one word of the text (words a token crosses are merged) or one special token; "
                  "each bar is one run. att_received adds up over a word's tokens; value norm and sink rate take "
                  "the largest. The outline is the strongest label among the word's tokens.")
    st.dataframe(compare_charts.aligned_table(frame, field), hide_index=True,
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in compare_charts.aligned_table(frame, field).columns if c.endswith(field)})


def depth_section(analyses) -> None:
    st.subheader("Layer by layer, on a relative depth axis")
    ids = "-".join(str(a.run_id) for a in analyses)
    ui.show_chart(compare_charts.depth_curves(compare_charts.depth_frame(analyses)), f"compare-depth-{ids}",
                  compare_charts.depth_caption(analyses) + " "
                  "Left: the share of the layer's attention (mean over heads and queries) that token 0 receives. "
                  "Right: the share of the layer's heads in which some token receives α > ε.")


st.title("Compare")
st.caption("Two to four runs side by side: the same text on different models, or different texts on one model.")
store = services.store_or_stop()
try:
    ids = choose_runs(store)
    if len(ids) < 2:
        st.info("Give at least two run ids, pick recent runs, or select runs on the History page.")
        st.stop()
    if len(ids) > links.MAX_COMPARE:
        raise links.LinkError(f"compare takes 2 to {links.MAX_COMPARE} runs; got {len(ids)}")
    analyses = [services.load_run(run_id) for run_id in ids]
    overview(analyses)
    alignment_note(analyses)
    field = st.radio("Per-token value", list(FIELDS), format_func=FIELDS.get, horizontal=True, key="cmp_field")
    frames = [(f"run {a.run_id} · {a.model_name}", run_charts.token_frame(a)) for a in analyses]
    same_length = len({a.n_tokens for a in analyses}) == 1
    ui.show_chart(charts.compare_bars(frames, field), f"compare-{field}-" + "-".join(map(str, ids)),
                  ("One bar chart per run, stacked with the same width per position so positions line up. "
                   if same_length else "One bar chart per run on one square-root value scale; the runs have different lengths, "
                   "so each gets its own width (positions do not line up: use Aligned by words for one text). ")
                  + "Bars are coloured by each run's own labels.")
    st.subheader("Sinks per run")
    st.caption("Tokens that are not neutral, reach τ_att, or sink in at least one head (sink rate > 0).")
    st.dataframe(sinks_table(analyses), hide_index=True,
                 column_config={"att_received": st.column_config.NumberColumn(format="%.4f"),
                                "value_norm": st.column_config.NumberColumn(format="%.3f"),
                                "sink_rate": st.column_config.NumberColumn(format="%.2f")})
    word_alignment(analyses)
    depth_section(analyses)
    differences(store, analyses)
except SinkFixError as error:
    st.error(str(error))
