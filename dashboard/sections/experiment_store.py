"""The parts the experiment sections share: run one with a progress bar and store it, open a stored
one from the query string, and list the stored ones with deep links. Layout and store calls only."""
from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import streamlit as st

from dashboard import services, sharing, units, visitors
from dashboard.progress import StatusProgress
from sinkfix.errors import SinkFixError

Show = Callable[[dict, int], None]


def run_and_store(kind: str, label: str, work, describe: Callable[[dict], str], query: str) -> int | None:
    """Run ``work(get_model, progress)`` in an st.status box with an st.progress bar, store the
    result as an experiment of ``kind`` labelled ``describe(result)``, and deep-link it.

    A failure's reason is shown as an error box *below* the status box, never inside it: a status
    box collapses when it fails, which would hide the one sentence that says what went wrong."""
    try:
        store = services.get_store()
    except SinkFixError as error:
        st.error(str(error))
        return None
    failed: str | None = None
    started = time.perf_counter()
    with st.status(label, expanded=True) as status:
        progress = StatusProgress(status)
        loading = [0.0]  # seconds spent loading models (the rest is the experiment itself)
        try:
            with visitors.Turns(status) as turns:  # one job per model at a time; the place in line shows here

                def get(name: str):
                    turns.take(name)
                    began = time.perf_counter()
                    try:
                        return services.model_shelf().get(name, progress=progress.stage)
                    finally:
                        loading[0] += time.perf_counter() - began

                result = work(get, progress)
            data = result.to_json()
            experiment_id = store.save_experiment(kind, data, describe(data), result.headline(),
                                                  viewer=services.viewer())
        except SinkFixError as error:
            failed = str(error)
        if failed is None:
            total = time.perf_counter() - started
            # The split says where the time went, so a page run can be compared with the CLI's.
            status.update(label=f"Saved as experiment {experiment_id} ({total:.1f} s: model {loading[0]:.1f} s, "
                          f"experiment {total - loading[0]:.1f} s)", state="complete", expanded=False)
        else:
            status.update(label=f"{label}: failed (the reason is below)", state="error", expanded=False)
    if failed is not None:
        st.error(failed)
        return None
    st.query_params[query] = str(experiment_id)
    return experiment_id


def open_from_query(store, query: str, shows: dict[str, Show], noun: str) -> None:
    """Show the experiment whose id is in ``?query=``, with the view of its kind."""
    raw = st.query_params.get(query)
    if not raw:
        return
    if not str(raw).isdigit():
        st.error(f"'{raw}' is not an experiment id: ids are whole numbers from 1 up")
        return
    row = store.experiment(int(raw), viewer=services.viewer())
    if row is None or row["kind"] not in shows:
        st.error(f"no stored {noun} experiment has id {raw}")
        return
    st.subheader(f"Experiment {row['id']} · {row['kind']} · {row['label']}")
    st.caption(f"Stored {units.when(row['created_at'])}; link: `?{query}={row['id']}`.")
    sharing.control("experiment", row["id"])
    shows[row["kind"]](row["result"], row["id"])


def stored_frame(rows: list[dict], query: str) -> pd.DataFrame:
    """Stored experiments as a table: newest first, a readable time, the headline with its unit."""
    frame = pd.DataFrame(rows, columns=["id", "created_at", "kind", "model", "label", "headline"])
    frame = frame.sort_values("id", ascending=False)
    return pd.DataFrame({
        "open": [f"?{query}={i}" for i in frame["id"]],
        "id": frame["id"],
        "created": [units.when(t) for t in frame["created_at"]],
        "kind": frame["kind"],
        "model": frame["model"],
        "headline": [units.headline(k, h) for k, h in zip(frame["kind"], frame["headline"])],
        "label": frame["label"].fillna(units.MISSING),
    })


def stored_table(store, query: str, kinds: tuple[str, ...], noun: str, headline_help: str, key: str) -> None:
    """Every stored experiment of ``kinds``, newest first, each with an 'open' link."""
    rows = [row for kind in kinds for row in store.experiments(kind=kind, viewer=services.viewer())]
    if not rows:
        st.caption(f"No stored {noun} experiments yet.")
        return
    st.dataframe(stored_frame(rows, query), hide_index=True, key=key, column_config={
        "open": st.column_config.LinkColumn("open", display_text="open", width="small"),
        "id": st.column_config.NumberColumn("id", width="small"),
        "headline": st.column_config.TextColumn("headline", help=headline_help, width="medium"),
    })
