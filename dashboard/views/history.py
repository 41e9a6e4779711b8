"""History: every stored run the visitor may read (their own and those shared with them), filtered and
paged in the database, so 10,000 runs stay fast."""
import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import links, services, ui, units
from sinkfix.errors import SinkFixError

ALL = "All models"
PAGE_SIZES = (25, 50, 100, 200)


def filters(store) -> dict:
    cols = st.columns([2, 3, 2, 2])
    model = cols[0].selectbox("Model", [ALL, *store.models(viewer=services.viewer())], key="hi_model")
    text = cols[1].text_input("Text contains", key="hi_text", placeholder="e.g. [MASK]")
    since = cols[2].date_input("Created on or after", value=None, key="hi_since", format="YYYY-MM-DD")
    cols[3].markdown("&nbsp;")
    detrimental = cols[3].checkbox("Has detrimental tokens", key="hi_detrimental")
    return {
        "model": None if model == ALL else model,
        "text_contains": text.strip() or None,
        "since": since.isoformat() if isinstance(since, dt.date) else None,
        "label": "detrimental" if detrimental else None,
    }


def whose(owner: str, shared: bool, me: str) -> str:
    """One short cell for the owner column: "you", or the owner's name, and whether the run is shared."""
    return ("you" if owner == me else owner) + (" · shared" if shared else "")


def table(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["id", "created_at", "model", "text", "n_tokens",
                                        "n_beneficial", "n_detrimental", "n_neutral", "owner", "shared"])
    me = services.viewer().name
    frame["owner"] = [whose(o, s, me) for o, s in zip(frame["owner"], frame["shared"])]
    frame = frame.drop(columns=["shared"])
    frame["text"] = frame["text"].map(lambda t: ui.shorten(t, 90))
    frame["created_at"] = frame["created_at"].map(units.when)
    frame["open"] = frame["id"].map(lambda i: links.url(links.DRILLDOWN, links.drilldown_query(int(i))))
    return frame


def actions(store, selected: list[int]) -> None:
    row = st.container(horizontal=True, gap="small")
    if row.button("Open in drill-down", disabled=len(selected) != 1, key="hi_open",
                      icon=":material/grid_on:", help="Select exactly one row."):
        st.switch_page(links.DRILLDOWN, query_params=links.drilldown_query(selected[0]))
    if row.button("Compare", disabled=not 2 <= len(selected) <= links.MAX_COMPARE, key="hi_compare",
                      icon=":material/compare_arrows:", help="Select 2 to 4 rows."):
        st.switch_page(links.COMPARE, query_params=links.compare_query(selected))
    if row.button(f"Delete {len(selected)} selected", disabled=not selected, key="hi_delete",
                      icon=":material/delete:"):
        st.session_state.hi_confirm = list(selected)
    pending = st.session_state.get("hi_confirm")
    if pending:
        st.warning(f"Delete run(s) {', '.join(map(str, pending))}? This cannot be undone.")
        yes, no, _ = st.columns([1, 1, 4])
        if yes.button("Yes, delete", type="primary", key="hi_confirm_yes"):
            for run_id in pending:
                try:
                    store.delete(run_id, viewer=services.viewer())
                except SinkFixError as error:
                    st.error(str(error))
                services.forget(run_id)
            st.session_state.hi_confirm = None
            st.session_state.hi_deleted = pending
            st.rerun()
        if no.button("Cancel", key="hi_confirm_no"):
            st.session_state.hi_confirm = None
            st.rerun()
    if st.session_state.get("hi_deleted"):
        st.success(f"Deleted run(s) {', '.join(map(str, st.session_state.pop('hi_deleted')))}.")


def export(store, where: dict, total: int) -> None:
    def everything() -> str:
        rows = store.list(**where, limit=max(total, 1), offset=0, viewer=services.viewer())
        return pd.DataFrame(rows).to_csv(index=False)

    st.download_button(f"Export all {total} matching runs (CSV)", everything, file_name="sinkfix-runs.csv",
                       mime="text/csv", key="hi_export", on_click="ignore", icon=":material/download:",
                       disabled=total == 0)


st.title("History")
st.caption("Your stored analyses and those others shared with you. Filters and paging run in the database. Select "
           "rows to open or compare them; the link column opens a run's drill-down.")
store = services.store_or_stop()
try:
    where = filters(store)
    total = store.count(**where, viewer=services.viewer())
    left, right, info = st.columns([1, 1, 3])
    size = left.selectbox("Rows per page", PAGE_SIZES, index=1, key="hi_size")
    pages = max(1, -(-total // size))
    page = right.number_input(f"Page (of {pages})", min_value=1, value=1, step=1, key="hi_page")
    offset = (min(page, pages) - 1) * size
    rows = store.list(**where, limit=size, offset=offset, viewer=services.viewer())
    info.markdown(f"&nbsp;  \n**{total}** matching runs; showing {offset + 1 if rows else 0}–{offset + len(rows)}.")
    if not rows:
        st.info("No runs match. Clear the filters, or analyse a text on the Analyze page.")
    frame = table(rows)
    event = st.dataframe(
        frame, hide_index=True, on_select="rerun", selection_mode="multi-row", key="hi_table",
        column_config={
            "id": st.column_config.NumberColumn("run", width="small"),
            "created_at": st.column_config.TextColumn("created"),
            "text": st.column_config.TextColumn("text", width="medium"),
            **ui.count_columns(),
            "owner": st.column_config.TextColumn("owner", width="small", help="Shared: every visitor can read "
                                                 "the run; only its owner changes or deletes it."),
            "open": st.column_config.LinkColumn("drill-down", display_text="open"),
        },
    )
    selected = [int(frame.iloc[i]["id"]) for i in event.selection.rows if i < len(frame)]
    actions(store, selected)
    export(store, where, total)
except SinkFixError as error:
    st.error(str(error))
