"""Drill-down: ?run=ID shows that run; layer and head come from the URL; the head map is that head's."""
from __future__ import annotations

import json

import numpy as np
from streamlit.testing.v1 import AppTest

import sinkfix
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

DRILLDOWN = "views/drilldown.py"


def chart_specs(app: AppTest) -> list[dict]:
    return [json.loads(e.proto.spec) for e in app.get("vega_lite_chart")]


def test_drilldown_without_a_run_asks_for_one(run_ids: dict[str, int]) -> None:
    app = open_page(DRILLDOWN)
    assert_clean(app)
    assert "Choose a run" in page_text(app)


def test_drilldown_link_shows_that_run_and_head(run_ids: dict[str, int], seed_analyses) -> None:
    run_id = run_ids["cat"]
    app = open_page(DRILLDOWN, run=str(run_id), layer="2", head="5")
    assert_clean(app)
    text = page_text(app)
    assert f"Run {run_id} · minilm · 9 tokens" in text
    assert "The cat sat on the mat." in text
    assert "Layer 2, head 5: attention map" in text
    assert (app.number_input(key="layer").value, app.number_input(key="head").value) == (2, 5)
    titles = [json.dumps(spec.get("title")) for spec in chart_specs(app)]
    assert any("Layer 2, head 5" in t for t in titles)
    # The head summary holds the stored statistics of exactly that head.
    summary = app.table[0].value.set_index("quantity")["value"]
    expected = seed_analyses["cat"].head_table()[2 * seed_analyses["cat"].n_heads + 5]
    assert summary["α of the top sink"] == f"{expected['top_alpha']:.4f}"
    share = expected["top_contribution_share"]
    assert summary["contribution share of the top sink"] == f"{100 * share:.1f} %"  # whole, never cut to "0"


def test_head_map_is_read_for_the_selected_head_only(run_ids: dict[str, int], monkeypatch) -> None:
    calls = []
    real = Store.head_map

    def spy(self, run_id, layer, head, *, viewer):
        calls.append((run_id, layer, head))
        return real(self, run_id, layer, head, viewer=viewer)

    monkeypatch.setattr(Store, "head_map", spy)
    run_id = run_ids["seed"]
    app = open_page(DRILLDOWN, run=str(run_id), layer="4", head="7")
    assert_clean(app)
    assert calls == [(run_id, 4, 7)]
    original, corrected = real(Store(), run_id, 4, 7, viewer=LOCAL)
    assert np.allclose(original.sum(axis=1), 1, atol=1e-2)
    app.number_input(key="head").set_value(8).run()
    assert_clean(app)
    assert calls[-1] == (run_id, 4, 8)


def test_metric_choice_changes_the_grid(run_ids: dict[str, int]) -> None:
    app = open_page(DRILLDOWN, run=str(run_ids["seed"]), metric="entropy")
    assert_clean(app)
    assert app.selectbox(key="metric").value == "entropy"
    assert any("entropy per head" in json.dumps(spec.get("title", "")) or "entropy per head" in json.dumps(spec)
               for spec in chart_specs(app))


def test_unknown_run_is_an_error_box(run_ids: dict[str, int]) -> None:
    app = open_page(DRILLDOWN, run="424242")
    assert not app.exception
    assert len(app.error) == 1 and "no run with id 424242" in app.error[0].value


def test_bad_run_id_is_an_error_box(run_ids: dict[str, int]) -> None:
    app = open_page(DRILLDOWN, run="abc")
    assert not app.exception
    assert len(app.error) == 1 and "is not a run id" in app.error[0].value


def test_run_above_the_map_limit_says_so(db_path, minilm: sinkfix.LoadedModel, load_calls) -> None:
    analysis = sinkfix.analyze("one two three four five six", minilm, sinkfix.AnalysisSettings(map_token_limit=4))
    run_id = Store(db_path).save(analysis, viewer=LOCAL)
    app = open_page(DRILLDOWN, run=str(run_id))
    assert_clean(app)
    assert "per-head maps were not kept" in page_text(app)
