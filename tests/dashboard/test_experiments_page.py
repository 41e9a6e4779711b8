"""Experiments → Long context: run from the page, store, open by deep link; the chart builders.
(The Mechanisms tab is tested in test_experiments_mechanisms.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest

import sinkfix
from sinkfix.plots import longcontext as longcontext_charts
from dashboard.sections import model_picker
from sinkfix.experiments import kvquant, streaming
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

EXPERIMENTS = "views/experiments.py"
TEXT = " ".join(["the cat sat on the mat and the dog was in the sun ."] * 12)


@pytest.fixture(scope="module")
def llama(tiny_model_dirs) -> sinkfix.LoadedModel:
    return sinkfix.load_model(str(tiny_model_dirs["llama"]))


def test_deep_link_opens_a_stored_masked_window(db_path: Path, llama, load_calls) -> None:
    result = streaming.masked_window(llama, TEXT, 16, (0, 2), n_tokens=None, block=32).to_json()
    experiment_id = Store(db_path).save_experiment("streaming", result, "test", 1.0, viewer=LOCAL)
    app = open_page(EXPERIMENTS, experiment=str(experiment_id))
    assert_clean(app)
    assert f"Experiment {experiment_id} · streaming" in page_text(app)
    table = app.dataframe[0].value
    assert list(table["setting"]) == ["dense", "window", "window+2 sinks"]
    assert table["ppl"].tolist() == pytest.approx([result["dense_ppl"], *[r["ppl"] for r in result["settings"]]])
    assert load_calls == []


def test_deep_link_opens_a_stored_kvquant(db_path: Path, llama, load_calls) -> None:
    result = kvquant.kv_quant(llama, TEXT, (4,), (0, 1), max_tokens=40, max_chunks=3).to_json()
    experiment_id = Store(db_path).save_experiment("kvquant", result, "test", 0.1, viewer=LOCAL)
    app = open_page(EXPERIMENTS, experiment=str(experiment_id))
    assert_clean(app)
    table = app.dataframe[0].value
    assert table["ΔNLL (nats)"].tolist() == pytest.approx([r["delta_nll"] for r in result["settings"]])


def test_bad_deep_links_are_error_boxes(db_path: Path, load_calls) -> None:
    for value, message in (("abc", "not an experiment id"), ("999", "no stored long-context experiment")):
        app = open_page(EXPERIMENTS, experiment=value)
        assert not app.exception
        assert any(message in e.value for e in app.error)


def test_run_masked_window_from_the_page(db_path: Path, tmp_path: Path, tiny_model_dirs, llama, load_calls,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    # The file is in a data folder and the model on the server's list, as the policy asks (docs/security.md).
    monkeypatch.setenv("SINKFIX_DATA_DIRS", str(tmp_path))
    monkeypatch.setenv("SINKFIX_API_MODELS", f"minilm,smollm2-135m,{tiny_model_dirs['llama']}")
    app = open_page(EXPERIMENTS)
    app = app.selectbox(key="lc_model").select(longcontext_other()).run()
    app.text_input(key="lc_model_other").set_value(str(tiny_model_dirs["llama"]))
    app.text_input(key="lc_file").set_value(str(text))
    app.number_input(key="lc_window").set_value(16)
    app.number_input(key="lc_tokens").set_value(100)
    app.text_input(key="lc_sinks").set_value("0,4")
    app = app.button(key="lc_run").click().run()
    assert_clean(app)
    rows = Store(db_path).experiments(kind="streaming", viewer=LOCAL)
    assert len(rows) == 1
    stored = Store(db_path).experiment(rows[0]["id"], viewer=LOCAL)["result"]
    expected = streaming.masked_window(llama, TEXT, 16, (0, 4), 100)
    assert [r["nll"] for r in stored["settings"]] == pytest.approx([float(c.nll.mean()) for c in expected.curves])
    assert app.query_params["experiment"] == str(rows[0]["id"])


def longcontext_other() -> str:
    from dashboard.sections import longcontext
    return model_picker.OTHER


def test_chart_builders() -> None:
    result = {"model": "m", "mode": "stream", "window": 4, "n_tokens": 20, "scored_from": 4, "trained_positions": 10,
              "dense_ppl": 5.0, "dense_curve": [1.0, 2.0, 3.0],
              "settings": [{"name": "s0", "sinks": 0, "pos_shift": True, "ppl": 9.0, "ppl_ci95": [8.0, 10.0], "curve": [2.0, 4.0, 6.0]},
                           {"name": "recompute", "sinks": None, "ppl": 4.0, "ppl_ci95": [3.0, 5.0], "curve": [1.0, 1.0, 1.0]}]}
    frame = longcontext_charts.sinks_frame(result)
    assert frame["sinks"].tolist() == [0] and frame["high"].tolist() == [10.0]
    curves = longcontext_charts.curve_frame(result, bin_size=2)
    assert curves[curves.setting == "s0"]["nll"].tolist() == [3.0, 6.0]
    assert curves[curves.setting == "s0"]["position"].tolist() == [4, 6]
    for chart in (longcontext_charts.sinks_chart(result), longcontext_charts.curve_chart(result)):
        assert chart.to_dict()
    result["dense_ppl_past_trained"], result["settings"][0]["ppl_past_trained"] = 7.0, 11.0
    result["settings"][0]["delta_nll"], result["settings"][1]["delta_nll"] = 0.6, -0.2
    table = longcontext_charts.stream_frame(result)
    assert table["setting"].tolist() == ["dense", "s0", "recompute"]
    assert table["ppl past trained"].tolist()[:2] == [7.0, 11.0]  # dense's own, not blank
    assert table["ΔNLL vs dense (nats)"].tolist() == [0.0, 0.6, -0.2]
    quant = {"model": "m", "dense_ppl": 3.0, "settings": [
        {"name": "int4, first 0 kept", "bits": 4, "keep": 0, "delta_nll": 0.2, "delta_nll_ci95": [0.1, 0.3], "ppl": 3.5}]}
    assert longcontext_charts.quant_frame(quant)["low"].tolist() == [0.1]
    assert longcontext_charts.quant_chart(quant).to_dict()
