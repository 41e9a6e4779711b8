"""The parts the experiment sections share: run one with a progress bar and store it, open a stored
one from the query string, and list the stored ones with deep links. Layout and store calls only."""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from dashboard import services, visitors
from sinkfix.errors import SinkFixError

Show = Callable[[dict, int], None]


def run_and_store(kind: str, label: str, work, describe: Callable[[dict], str], query: str) -> int | None:
    """Run ``work(get_model, progress)`` in an st.status box with an st.progress bar, store the
    result as an experiment of ``kind`` labelled ``describe(result)``, and deep-link it."""
    try:
        store = services.get_store()
    except SinkFixError as error:
        st.error(str(error))
        return None
    with st.status(label, expanded=True) as status:
        bar = st.progress(0.0, text="loading the model")

        def progress(done: int, total: int, what: str) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"{what}: {done} of {total}")

        try:
            with visitors.Turns(status) as turns:  # one job per model at a time; the place in line shows here

                def get(name: str):
                    turns.take(name)
                    return services.model_shelf().get(name, progress=status.write)

                result = work(get, progress)
        except SinkFixError as error:
            status.update(label=f"{label}: failed", state="error", expanded=False)
            st.error(str(error))
            return None
        data = result.to_json()
        experiment_id = store.save_experiment(kind, data, describe(data), result.headline())
        status.update(label=f"Saved as experiment {experiment_id}", state="complete", expanded=False)
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
    row = store.experiment(int(raw))
    if row is None or row["kind"] not in shows:
        st.error(f"no stored {noun} experiment has id {raw}")
        return
    st.subheader(f"Experiment {row['id']} · {row['kind']} · {row['label']}")
    shows[row["kind"]](row["result"], row["id"])


def stored_table(store, query: str, kinds: tuple[str, ...], noun: str, headline_help: str, key: str) -> None:
    """Every stored experiment of ``kinds``, newest first, each with an 'open' link."""
    rows = [row for kind in kinds for row in store.experiments(kind=kind)]
    if not rows:
        st.caption(f"No stored {noun} experiments yet.")
        return
    frame = pd.DataFrame(rows).sort_values("id", ascending=False)
    frame["link"] = [f"?{query}={i}" for i in frame["id"]]
    st.dataframe(frame, hide_index=True, key=key, column_config={
        "link": st.column_config.LinkColumn("open", display_text="open"),
        "headline": st.column_config.NumberColumn("headline", help=headline_help),
    })
