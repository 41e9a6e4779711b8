"""Experiments → Eviction: the chart builders on a real (tiny) sweep, a stored sweep opened by deep link,
and a sweep run from the page with progress and stored."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sinkfix
from dashboard.sections import model_picker
from sinkfix.experiments.evict import sweep, view
from sinkfix.plots import evict as evict_charts
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

EXPERIMENTS = "views/experiments.py"
SETTINGS = sweep.SweepSettings(lengths=(80, 100), depths=(0.3, 0.7), seeds=2)


@pytest.fixture(scope="module")
def llama(tiny_model_dirs) -> sinkfix.LoadedModel:
    return sinkfix.load_model(str(tiny_model_dirs["llama"]))


@pytest.fixture(scope="module")
def result(llama) -> dict:
    return sweep.run_sweep(llama, SETTINGS).to_json()


def test_chart_frames_read_the_result(result: dict) -> None:
    frame = evict_charts.accuracy_frame(result)
    assert len(frame) == 7 * 3 * (1 + 2)  # presses x protections x (dense + two ratios)
    row = frame[(frame.press == "h2o") & (frame.ratio == 0.75) & (frame.protection == "first:4")].iloc[0]
    cell = result["results"]["h2o"]["0.75"]["first:4"]["accuracy"]
    assert (row.value, row.low, row.high) == (cell["mean"], *cell["ci95"])
    heat = evict_charts.heatmap_frame(result, "snapkv", "0.5", "none")
    assert sorted(heat["length"].unique()) == [80, 100] and sorted(heat["depth"].unique()) == [0.3, 0.7]
    hits = sum(p["outcomes"]["snapkv"]["0.5"]["none"]["correct"] for p in result["prompts"]
               if p["length"] == 80 and p["depth"] == 0.3)
    assert heat[(heat.length == 80) & (heat.depth == 0.3)]["label"].item() == f"{hits}/2"
    forest = evict_charts.forest_frame(result)
    assert set(forest["comparison"]) == {"first:4-none", "detected-none", "detected-first:4"}
    assert len(forest) == 7 * 2 * 3
    for chart in (evict_charts.accuracy_chart(result), evict_charts.needle_heatmap(result, "dense", "0.5", "none"),
                  evict_charts.paired_forest(result),
                  evict_charts.kept_strips(result["example"], ["streaming", "h2o"], "0.5", "first:4", 1)):
        assert chart.to_dict()


def test_the_kept_strip_colours_what_the_press_kept(result: dict) -> None:
    example = result["example"]
    kept, sinks = view.unpack(example, "streaming", "0.75", "first:4")
    layers, heads, n = kept.shape
    assert (layers, heads) == (2, 2) and n == example["prompt"]["length"]
    assert kept[:, :, :4].all() and kept[:, :, -1].all() and not kept[:, :, 10].any()  # sinks + recent window
    colours = evict_charts.strip_colours(kept[:, 0], np.zeros_like(sinks[:, 0]))
    assert tuple(colours[0, 0]) == evict_charts.KEPT and tuple(colours[0, 10]) == evict_charts.EVICTED


def test_deep_link_opens_a_stored_sweep(db_path: Path, result: dict, load_calls) -> None:
    experiment_id = Store(db_path).save_experiment("evict", result, "tiny", 0.5)
    app = open_page(EXPERIMENTS, evict=str(experiment_id))
    assert_clean(app)
    assert f"Experiment {experiment_id} · evict" in page_text(app)
    table = app.dataframe[0].value
    first = table[(table.press == "knorm") & (table.ratio == "0.5") & (table.protection == "detected")].iloc[0]
    assert first["accuracy"] == result["results"]["knorm"]["0.5"]["detected"]["accuracy"]["mean"]
    assert load_calls == []


def test_bad_deep_link_is_an_error_box(db_path: Path, load_calls) -> None:
    app = open_page(EXPERIMENTS, evict="999")
    assert not app.exception
    assert any("no stored eviction experiment" in e.value for e in app.error)


def test_run_a_sweep_from_the_page(db_path: Path, tiny_model_dirs, llama, load_calls,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_API_MODELS", f"minilm,smollm2-135m,{tiny_model_dirs['llama']}")
    app = open_page(EXPERIMENTS)
    app = app.selectbox(key="ev_model").select(model_picker.OTHER).run()
    app.text_input(key="ev_model_other").set_value(str(tiny_model_dirs["llama"]))
    app.text_input(key="ev_lengths").set_value("90")
    app.text_input(key="ev_depths").set_value("0.5")
    app.multiselect(key="ev_presses").set_value(["streaming", "tova"])
    app.text_input(key="ev_ratios").set_value("0.5")
    app = app.button(key="ev_run").click().run()
    assert_clean(app)
    rows = Store(db_path).experiments(kind="evict")
    assert len(rows) == 1
    stored = Store(db_path).experiment(rows[0]["id"])["result"]
    assert list(stored["results"]) == ["streaming", "tova"] and len(stored["prompts"]) == 1
    assert app.query_params["evict"] == str(rows[0]["id"])
    assert any("Saved as experiment" in s.label for s in app.status)


def test_a_stored_sweep_renders_in_a_notebook_with_the_pages_charts(result: dict) -> None:
    """``store.experiment(id)`` in a notebook: an escaped summary, and ``.plot`` draws what the tab draws."""
    from sinkfix.store.results import StoredResult

    row = StoredResult({"id": 9, "kind": "evict", "model": "<m>", "label": "<i>x</i>", "headline": 0.5,
                        "created_at": "2025-01-01T00:00:00+00:00", "result": result})
    html = row._repr_html_()
    assert "KV-cache eviction sweep 9" in html and "<i>" not in html and "&lt;m&gt;" in html
    assert "dense accuracy, 95% CI" in html and ".plot.accuracy()" in html
    assert row.plot.accuracy().to_dict() == evict_charts.accuracy_chart(result).to_dict()
    assert row.plot.paired().to_dict() == evict_charts.paired_forest(result).to_dict()
    assert (row.plot.heatmap("h2o", "0.5", "first:4").to_dict()
            == evict_charts.needle_heatmap(result, "h2o", "0.5", "first:4").to_dict())
