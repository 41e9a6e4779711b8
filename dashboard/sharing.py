"""The share toggle of a stored row (a run, an experiment, an evaluation, a corpus) on the page that shows it.

The owner sees a toggle: shared, every visitor may read the row (and find it in their lists), never
change it. Anyone else sees who shared it with them. The rule is ``sinkfix.policy.ownership``'s; the
store refuses a change by anyone but the owner whatever a page shows.
"""
from __future__ import annotations

import streamlit as st

from dashboard import services, ui
from sinkfix.errors import SinkFixError

LABEL = "Shared with other visitors"
HELP = ("Shared: everyone who can open this dashboard or the HTTP API can find and read it (not change or delete "
        "it). Private: only you (and the server's administrators) can.")


def control(kind: str, key: int | str, where=None, owner: str | None = None) -> None:
    """The owner's toggle for row ``key`` of ``kind`` ("run", "experiment", "evaluation", "corpus"), or a line
    saying whose it is (``owner``: whose row a name means, where two owners use it)."""
    where = where or st
    viewer = services.viewer()
    try:
        row = services.get_store().sharing(kind, key, viewer=viewer, owner=owner)
    except SinkFixError as error:
        where.error(str(error))
        return
    if not row["mine"]:
        whose = f"{'Shared by' if row['shared'] else 'Owned by'} {ui.escape_md(row['owner'])}"
        where.caption(f":material/group: {whose}: you can read it, not change it.")
        return
    widget = f"_share_{kind}_{row['id']}"
    where.toggle(LABEL, value=row["shared"], key=widget, help=HELP, on_change=_changed, args=(kind, key, widget))


def _changed(kind: str, key: int | str, widget: str) -> None:
    try:
        services.get_store().set_shared(kind, key, bool(st.session_state[widget]), viewer=services.viewer())
    except SinkFixError as error:  # shown at the top of the rerun
        st.error(str(error))
