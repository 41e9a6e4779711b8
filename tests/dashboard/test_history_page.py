"""History: filters and paging in the database, selection to drill-down/compare, delete with confirmation."""
from __future__ import annotations

import dataclasses

from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

HISTORY = "views/history.py"


def test_history_lists_runs_newest_first(run_ids: dict[str, int]) -> None:
    app = open_page(HISTORY)
    assert_clean(app)
    table = app.dataframe[0].value
    assert list(table["id"]) == sorted(run_ids.values(), reverse=True)
    assert "3** matching runs" in page_text(app)
    assert list(table["open"])[0] == f"drilldown?run={max(run_ids.values())}"


def test_filters_reach_the_database(run_ids: dict[str, int]) -> None:
    app = open_page(HISTORY)
    app.text_input(key="hi_text").set_value("cat").run()
    assert list(app.dataframe[0].value["id"]) == [run_ids["cat"]]
    app.text_input(key="hi_text").set_value("").run()
    app.checkbox(key="hi_detrimental").check().run()
    assert_clean(app)
    expected = [i for name, i in run_ids.items() if Store().get(i, viewer=LOCAL).label_counts()["detrimental"]]
    assert sorted(app.dataframe[0].value["id"]) == sorted(expected) and expected


def test_paging_through_many_runs(db_path, seed_analyses, load_calls) -> None:
    store = Store(db_path)
    base = seed_analyses["cat"]
    for i in range(60):
        store.save(dataclasses.replace(base, text=f"{base.text} #{i}"), cache_key=f"k{i}", viewer=LOCAL)
    app = open_page(HISTORY)
    app.selectbox(key="hi_size").select(25).run()
    app.number_input(key="hi_page").set_value(3).run()
    assert_clean(app)
    shown = list(app.dataframe[0].value["id"])
    assert len(shown) == 10 and shown == [r["id"] for r in store.list(limit=25, offset=50, viewer=LOCAL)]
    assert "Page (of 3)" in app.number_input(key="hi_page").label


def test_delete_needs_confirmation(run_ids: dict[str, int]) -> None:
    app = open_page(HISTORY)
    app.session_state["hi_confirm"] = [run_ids["cat"]]  # what "Delete selected" sets for the selected rows
    app.run()
    assert "cannot be undone" in page_text(app)
    app.button(key="hi_confirm_no").click().run()
    assert Store().count(viewer=LOCAL) == 3
    app.session_state["hi_confirm"] = [run_ids["cat"]]
    app.run()
    app.button(key="hi_confirm_yes").click().run()
    assert_clean(app)
    assert Store().count(viewer=LOCAL) == 2
    assert run_ids["cat"] not in list(app.dataframe[0].value["id"])
    assert "Deleted run(s)" in page_text(app)


def test_history_on_an_empty_database(db_path, load_calls) -> None:
    app = open_page(HISTORY)
    assert_clean(app)
    assert "No runs match" in page_text(app)


def test_corrupt_database_is_an_error_box(db_path) -> None:
    db_path.write_bytes(b"garbage" * 200)
    app = open_page(HISTORY)
    assert not app.exception and "not a SQLite database" in app.error[0].value
