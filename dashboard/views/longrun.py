"""Long run: where the sinks are along a long text (2k-32k tokens), for runs that keep no maps.

``?run=ID&start=A&end=B`` restores the view. Everything here is read from the run's row and its
per-token and per-(layer, head) rows, which the store keeps in plain tables: no blob is decoded, so a
32,768-token run opens as fast as its 32k rows can be read. Parts: the whole text as a strip whose
bars can be brushed to select a span; the span token by token (zoomable) with its text and values; a
layer x head grid of each head's top sink position.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import links, services, ui, units
from sinkfix.plots import longrun as longrun_charts
from sinkfix.analysis.display import show_token, show_tokens
from sinkfix.errors import SinkFixError

DEFAULT_SPAN = 256
MAX_SPAN = 2048  # tokens drawn one bar each; a wider brush is cut to this
TEXT_SHOWN = 3000  # characters of the span's text shown


@st.cache_resource(max_entries=4, show_spinner=False)
def _rows(path: str, run_id: int, created_at: str, _viewer) -> tuple[dict, np.ndarray, pd.DataFrame, np.ndarray | None]:
    """Held per server (keyed by database, run and its creation time, so a deleted and reused id is never
    served stale): a second visitor, or a reload, opens the run without reading 32k rows again. Only
    numbers are read for the whole text; token strings are read for the span shown. Not keyed by the
    viewer: ``rows_of`` checks that each visitor may read the run before it asks for it."""
    store = services.get_store()
    info = store.info(run_id, viewer=_viewer)
    strengths = np.array(store.token_strengths(run_id, viewer=_viewer), dtype=np.float64).reshape(-1, 3)
    heads = pd.DataFrame(store.head_rows(run_id, viewer=_viewer))
    heads["token"] = [show_token(t, 16) for t in heads["top_token_text"]]
    return info, strengths, heads, offsets_array(info.get("offsets"))


def offsets_array(raw: str | None) -> np.ndarray | None:
    """The stored "[[0, 0], [0, 6], ...]" as an [T, 2] int array. json.loads builds 32k small lists (half
    a second on a busy machine); numpy reads the numbers in one pass."""
    if not raw:
        return None
    numbers = raw.replace("[", " ").replace("]", " ").replace(",", " ").split()
    return np.array(numbers, dtype=np.int64).reshape(-1, 2)


def rows_of(store, run_id: int) -> tuple[dict, np.ndarray, pd.DataFrame, np.ndarray | None]:
    """The run's row, per-token (att_received, sink rate, label rank), per-head rows and token spans;
    no blob is read."""
    stamp = store.created_at(run_id, viewer=services.viewer())  # missing, for a run this visitor may not read
    return _rows(str(store.path), run_id, stamp, services.viewer())


def _brushed() -> None:
    """A drag on the strip moves the span inputs (and so the URL) to the brushed positions."""
    chosen = (st.session_state.lr_strip.get("selection") or {}).get("span") or {}
    values = chosen.get("start")
    if values:
        low, high = int(max(0, min(values))), int(max(values)) + 1
        st.session_state.start, st.session_state.end = low, max(high, low + 1)


def _new_run() -> None:
    """Another run id: its span starts again at the beginning."""
    for name in ("start", "end"):
        st.session_state.pop(name, None)
        st.query_params.pop(name, None)


def span_of(n_tokens: int) -> tuple[int, int]:
    """The span (the inputs' values, else the URL's), checked: a bad value is an error box, never a silent
    fallback to another span."""
    raw = {name: st.session_state.get(name, st.query_params.get(name)) for name in ("start", "end")}
    for name, value in raw.items():
        if value is not None and not str(value).strip().isdigit():
            raise links.LinkError(f"'{value}' is not a token position: {name} must be a whole number from 0 up")
    start = int(raw["start"]) if raw["start"] is not None else 0
    end = int(raw["end"]) if raw["end"] is not None else min(n_tokens, start + DEFAULT_SPAN)
    if not 0 <= start < end <= n_tokens:
        raise links.LinkError(f"the span {start}–{end} is not within this run's {n_tokens} tokens "
                              f"(positions 0..{n_tokens - 1}; end is exclusive)")
    return start, end


def header(info: dict) -> None:
    s = info["settings"]
    st.header(f"Run {info['id']} · {info['model']} · {info['n_tokens']:,} tokens")
    st.caption(f"{info['n_layers']} layers × {info['n_heads']} heads · τ_att {s.tau_att:g} · τ_norm {s.tau_norm:g} · "
               f"ε {s.epsilon:g} · {info['n_detrimental']} detrimental · created {units.when(info['created_at'])} · "
               + ("maps stored: the drill-down shows each head's map" if info["has_maps"] else
                  f"no attention maps kept (above the map limit of {s.map_token_limit} tokens)"))
    row = st.container(horizontal=True, gap="small")
    row.page_link(links.ANALYZE, label="Token-level results", icon=":material/science:",
                  query_params={"run": str(info["id"])})
    row.page_link(links.DRILLDOWN, label="Drill-down", icon=":material/grid_on:",
                  query_params=links.drilldown_query(info["id"]))


def span_section(store, info: dict, offsets: np.ndarray | None, start: int, end: int) -> None:
    st.subheader("The selected span")
    cols = st.columns([1, 1, 4])
    cols[0].number_input("From token", 0, info["n_tokens"] - 1, step=1, key="start", bind="query-params")
    cols[1].number_input("To token (excl.)", 1, info["n_tokens"], step=1, key="end", bind="query-params")
    if end - start > MAX_SPAN:
        st.info(f"The span holds {end - start:,} tokens; the first {MAX_SPAN:,} are drawn one by one.")
        end = start + MAX_SPAN
    frame = pd.DataFrame.from_records(store.token_records(info["id"], start, end, viewer=services.viewer()),
                                      columns=list(store.TOKEN_COLUMNS))
    frame["token"] = show_tokens(frame["token"])
    ui.show_chart(longrun_charts.span_bars(frame), f"run{info['id']}-span-{start}-{end}",
                  "Attention each token of the span receives (share of all attention, mean over layers, heads and "
                  "queries), coloured by its label. Hover for the token.")
    st.markdown("**Text of the span**")
    text = span_text(info["text"], offsets, start, end) if offsets is not None else " ".join(frame["token"])
    st.text(text if len(text) <= TEXT_SHOWN else text[:TEXT_SHOWN] + " …")
    if len(text) > TEXT_SHOWN:
        st.caption(f"The first {TEXT_SHOWN:,} of the span's {len(text):,} characters; every token is in the table.")
    st.dataframe(frame, hide_index=True, height=260, column_config={
        "index": st.column_config.NumberColumn("#", width="small"),
        "att_received": st.column_config.NumberColumn("att", format="%.5f"),
        "value_norm": st.column_config.NumberColumn("norm", format="%.3f"),
        "sink_rate": st.column_config.NumberColumn("sink rate", format="%.2f")})


def span_text(text: str, offsets: np.ndarray, start: int, end: int) -> str:
    """The characters the span's tokens cover (special tokens cover none)."""
    pairs = offsets[start:end]
    pairs = pairs[pairs[:, 1] > pairs[:, 0]]
    return text[int(pairs[0, 0]):int(pairs[-1, 1])] if len(pairs) else "(special tokens only)"


def heads_section(info: dict, heads: pd.DataFrame) -> None:
    st.subheader("Where each head sinks")
    frame = longrun_charts.sink_positions(heads)
    left, right = st.columns([3, 2], gap="large")
    with left:
        ui.show_chart(longrun_charts.sink_position_grid(frame, info["n_tokens"]), f"run{info['id']}-sink-positions",
                      "Each cell is one head; its colour is the position of the token that head attends to most "
                      "(α: attention received, averaged over the queries that can see it). Faded cells: weak α.")
    with right:
        counts = (frame.groupby(["position", "token"]).agg(heads=("head", "size"), mean_alpha=("alpha", "mean"))
                  .reset_index().sort_values(["heads", "mean_alpha"], ascending=False).head(20))
        st.markdown("**Positions that are some head's top sink**")
        st.dataframe(counts, hide_index=True, column_config={
            "position": st.column_config.NumberColumn("#"),
            "heads": st.column_config.NumberColumn("heads", help="heads whose top sink this is"),
            "mean_alpha": st.column_config.NumberColumn("mean α", format="%.3f")})


st.title("Long run")
store = services.store_or_stop()
try:
    st.text_input("Run id", key="run", bind="query-params", placeholder="e.g. 12", on_change=_new_run)
    run_id = links.parse_run_id(st.session_state.get("run"))
    if run_id is None:
        st.info("Give a run id (any run works; the view is made for long runs without maps). Long runs come from "
                "`python -m sinkfix analyze --text-file long.txt --map-limit 0` or a long text on Analyze.")
        st.stop()
    info, strengths, heads, offsets = rows_of(store, run_id)
    start, end = span_of(info["n_tokens"])
    st.session_state.setdefault("start", start)
    st.session_state.setdefault("end", end)
    header(info)
    size = longrun_charts.bin_size(info["n_tokens"])
    strip = longrun_charts.strip_frame(strengths[:, 0], strengths[:, 1], strengths[:, 2], size)
    ui.show_chart(longrun_charts.overview_strip(strip, info["n_tokens"], (start, end)),
                  f"run{run_id}-strip", f"Each bar covers {units.plural(size, 'token')} and shows the largest "
                  "attention any of them receives, so a sink is a spike; colour: the strongest label in the bar. "
                  "Drag across the strip to select a span; the shaded band is the span shown below.",
                  key="lr_strip", on_select=_brushed, selection_mode="span")
    span_section(store, info, offsets, start, end)
    heads_section(info, heads)
except SinkFixError as error:
    st.error(str(error))
