"""Analyze: the flow saves a run, the model is loaded once, user errors are error boxes, text stays escaped."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import sinkfix

from dashboard import services
from sinkfix.policy.ownership import LOCAL
from sinkfix.settings import AnalysisSettings
from sinkfix.store import Store

from .conftest import SCRIPT_TEXT, assert_clean, chart_specs, open_page, page_text

ANALYZE = "views/analyze.py"
MARKUP_KINDS = ("title", "header", "subheader", "markdown", "caption", "info", "warning", "success", "error")


def analyze(app: AppTest, text: str) -> AppTest:
    app.text_area(key="an_text").set_value(text)
    return app.button(key="an_run").click().run()


def test_analyze_page_renders_without_a_run(db_path: Path, load_calls: list[str]) -> None:
    app = open_page(ANALYZE)
    assert_clean(app)
    assert app.text_area(key="an_text").value == services.SEED_TEXT
    assert load_calls == []  # nothing is loaded until the user asks for an analysis


def test_analysis_is_saved_shown_and_the_model_is_not_reloaded(db_path: Path, load_calls: list[str]) -> None:
    app = analyze(open_page(ANALYZE), "The cat sat on the mat.")
    assert_clean(app)
    store = Store(db_path)
    rows = store.list(viewer=LOCAL)
    assert [r["text"] for r in rows] == ["The cat sat on the mat."]
    run_id = rows[0]["id"]
    assert app.query_params["run"] == str(run_id)
    assert f"Run {run_id} · minilm · {rows[0]['n_tokens']} tokens" in page_text(app)
    # The token table on the page holds the stored numbers.
    table = app.dataframe[0].value
    stored = store.token_rows(run_id, viewer=LOCAL)
    assert list(table["token"]) == [r["token"] for r in stored]
    assert list(table["att_received"]) == [r["att_received"] for r in stored]
    shelf_model = services.model_shelf().get("minilm")

    app = analyze(app, "A second, different sentence.")
    assert_clean(app)
    assert store.count(viewer=LOCAL) == 2
    assert load_calls == ["minilm"]  # the second analysis reused the model held in st.cache_resource
    assert services.model_shelf().get("minilm") is shelf_model


def test_settings_reach_the_stored_run(db_path: Path, load_calls: list[str], minilm) -> None:
    app = open_page(ANALYZE)
    app.number_input(key="an_tau_att").set_value(0.03)
    app.number_input(key="an_tau_norm").set_value(0.6)
    app.number_input(key="an_layer").set_value(1)
    app = analyze(app, "The cat sat on the mat.")
    assert_clean(app)
    stored = Store(db_path).get(int(app.query_params["run"]), viewer=LOCAL)
    assert (stored.settings.tau_att, stored.settings.tau_norm, stored.settings.layer) == (0.03, 0.6, 1)
    expected = sinkfix.analyze("The cat sat on the mat.", minilm, AnalysisSettings(layer=1, tau_att=0.03, tau_norm=0.6))
    assert stored.labels == expected.labels
    assert np.array_equal(stored.value_norm, expected.value_norm)


def test_empty_text_is_an_error_box(db_path: Path, load_calls: list[str]) -> None:
    app = analyze(open_page(ANALYZE), "   ")
    assert not app.exception
    assert [e.value for e in app.error] == ["the text is empty: give at least one word to analyse"]
    assert Store(db_path).count(viewer=LOCAL) == 0


def test_unknown_model_offline_is_an_error_box(db_path: Path, load_calls: list[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # On the server's list but not reachable offline (a name off the list: tests/dashboard/test_security.py).
    monkeypatch.setenv("SINKFIX_API_MODELS", "minilm,smollm2-135m,no-such-org/no-such-model")
    app = open_page(ANALYZE)
    app.selectbox(key="an_model").select("Other: hub id or local path").run()
    app.text_input(key="an_model_other").set_value("no-such-org/no-such-model")
    app = analyze(app, "hello world")
    assert not app.exception
    assert len(app.error) == 1 and "no-such-org/no-such-model" in app.error[0].value
    assert "minilm" in app.error[0].value  # the message names the models that work offline


def test_unknown_run_id_is_an_error_box(run_ids: dict[str, int]) -> None:
    app = open_page(ANALYZE, run="999")
    assert not app.exception
    assert [e.value for e in app.error] == [f"no run with id 999 in {Store().path}"]


def test_script_text_never_reaches_the_page_as_html(run_ids: dict[str, int]) -> None:
    app = open_page(ANALYZE, run=str(run_ids["script"]))
    assert_clean(app)
    assert SCRIPT_TEXT in [e.value for e in app.text]  # shown, as plain text
    for kind in MARKUP_KINDS:
        for element in getattr(app, kind):
            assert "<script" not in str(element.value).lower(), (kind, element.value)
    for element in app.markdown:
        assert not element.proto.allow_html
    # Tokens travel as table and chart data (drawn as text by the data grid and Vega), not as markup.
    assert {"<", "script", ">"} <= set(app.dataframe[0].value["token"])
    specs = [e.proto.spec for e in app.get("vega_lite_chart")]
    assert specs and not any("<script" in spec for spec in specs)


def test_no_page_enables_raw_html() -> None:
    sources = Path(__file__).resolve().parents[2].joinpath("dashboard").rglob("*.py")
    for path in sources:
        code = path.read_text()
        assert not re.search(r"unsafe_allow_html|st\.html\(|components\.v1", code), path


def test_opening_a_run_loads_its_model_text_and_settings_into_the_form(run_ids: dict[str, int], seed_analyses) -> None:
    cat = seed_analyses["cat"]
    app = open_page(ANALYZE, run=str(run_ids["cat"]))
    assert_clean(app)
    assert app.text_area(key="an_text").value == cat.text
    assert app.selectbox(key="an_model").value == "minilm"
    assert app.number_input(key="an_tau_att").value == cat.settings.tau_att == 0.05
    assert app.number_input(key="an_tau_norm").value == cat.settings.tau_norm == 0.85
    assert app.number_input(key="an_layer").value == cat.settings.layer
    assert not app.warning  # no "default value also set via Session State" warning
    assert any(b.key == "an_rerun" for b in app.button)


def test_rerun_with_one_threshold_changed_links_back_to_the_original(run_ids: dict[str, int], db_path: Path,
                                                                     minilm, load_calls) -> None:
    original = run_ids["cat"]
    app = open_page(ANALYZE, run=str(original))
    app.number_input(key="an_tau_att").set_value(0.2)
    app = app.button(key="an_rerun").click().run()
    assert_clean(app)
    new_id = int(app.query_params["run"])
    assert new_id not in run_ids.values()
    store = Store(db_path)
    rerun, before = store.get(new_id, viewer=LOCAL), store.get(original, viewer=LOCAL)
    assert rerun.parent_run_id == original and rerun.text == before.text  # the same text, not the seed text
    assert (rerun.settings.tau_att, rerun.settings.tau_norm) == (0.2, before.settings.tau_norm)
    expected = sinkfix.analyze(before.text, minilm, AnalysisSettings(tau_att=0.2, tau_norm=0.85))
    assert rerun.labels == expected.labels
    back = [link.proto for link in app.get("page_link") if link.proto.query_string == f"run={original}"]
    assert back and f"Re-run of run {original}" in back[0].label
    # The form keeps the user's change after the re-run (it is what the new run used).
    assert app.number_input(key="an_tau_att").value == 0.2


def test_rerun_of_an_identical_request_says_it_was_served_from_the_store(run_ids: dict[str, int], db_path: Path) -> None:
    app = open_page(ANALYZE, run=str(run_ids["cat"]))
    app = app.button(key="an_rerun").click().run()
    assert_clean(app)
    assert app.query_params["run"] == str(run_ids["cat"]) and Store(db_path).count(viewer=LOCAL) == len(run_ids)
    assert "already stored as run" in page_text(app)


def test_learned_sink_is_a_virtual_column_apart_from_the_tokens(db_path: Path, load_calls) -> None:
    import dataclasses
    import json

    from ..synthetic import synthetic_analysis

    base = synthetic_analysis(n_layers=3, n_heads=2, n_tokens=5, seed=3)
    mass = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], dtype=np.float32)
    run_id = Store(db_path).save(dataclasses.replace(base, learned_sink_mass=mass), viewer=LOCAL)
    app = open_page(ANALYZE, run=str(run_id))
    assert not app.exception
    bars, data = next((s, d) for s, d in chart_specs(app) if "Attention received per token" in json.dumps(s.get("title", "")))
    sink_layer = bars["layer"][1]
    assert sink_layer["mark"]["strokeDash"]  # styled apart from the real tokens' bars
    assert data[sink_layer["data"]["name"]]["att_received"].tolist() == [pytest.approx(float(mass.mean()))]
    assert bars["layer"][0]["encoding"]["x"]["sort"][0] == "<sink>"
    # The head grid offers <sink> as its own entry and draws the per-head mass.
    picker = next(s for s in app.selectbox if s.key and s.key.startswith("an_grid_token_"))
    picker.select(-1)
    app = app.run()
    assert not app.exception
    grid, data = next((s, d) for s, d in chart_specs(app) if "Learned sink" in json.dumps(s.get("title", "")))
    rows = next(iter(data.values()))
    assert sorted((int(r.layer), int(r.head), round(float(r.sink_mass), 4)) for r in rows.itertuples()) == [
        (l, h, round(float(mass[l, h]), 4)) for l in range(3) for h in range(2)]
