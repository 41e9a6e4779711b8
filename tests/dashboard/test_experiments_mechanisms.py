"""Experiments → Mechanisms: run the protocols from the page, store them, open them by deep link;
and the Analyze page's massive-activation badge, standalone. Numbers are checked against the core."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import sinkfix
from sinkfix.plots import mechanisms as mechanism_charts
from sinkfix.experiments import sinkrate
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

EXPERIMENTS = "views/experiments.py"


def _stored_sinkrate(db_path: Path, minilm: sinkfix.LoadedModel) -> tuple[int, dict]:
    result = sinkrate.sink_rate_protocol(minilm, ("random", "repeated"), n=4, length=12).to_json()
    return Store(db_path).save_experiment("sinkrate", result, "test", result["kinds"]["random"]["rate"], viewer=LOCAL), result


def test_deep_link_opens_a_stored_sink_rate(db_path: Path, minilm: sinkfix.LoadedModel, load_calls: list[str]) -> None:
    experiment_id, result = _stored_sinkrate(db_path, minilm)
    app = open_page(EXPERIMENTS, mechanism=str(experiment_id))
    assert_clean(app)
    assert f"Experiment {experiment_id} · sinkrate" in page_text(app)
    table = app.dataframe[0].value
    assert list(table["kind"]) == ["random", "repeated"]
    assert table["Sink₁ %"].tolist() == pytest.approx([100 * result["kinds"][k]["rate"] for k in ("random", "repeated")])
    assert load_calls == []  # showing a stored result loads no model


def test_bad_deep_links_are_error_boxes(db_path: Path, load_calls: list[str]) -> None:
    for value, message in (("abc", "not an experiment id"), ("999", "no stored mechanism experiment")):
        app = open_page(EXPERIMENTS, mechanism=value)
        assert not app.exception
        assert any(message in e.value for e in app.error)


def test_run_sink_rate_from_the_page(db_path: Path, tmp_path: Path, minilm: sinkfix.LoadedModel,
                                     load_calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_DATA_DIRS", str(tmp_path))  # the file is in a data folder (docs/security.md)
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog and runs far away " * 40)
    app = open_page(EXPERIMENTS)
    app.selectbox(key="mech_sr_model").select("minilm")
    app.text_input(key="mech_sr_file").set_value(str(text))
    app.number_input(key="mech_sr_n").set_value(4)
    app.number_input(key="mech_sr_length").set_value(12)
    app = app.button(key="mech_sr_run").click().run()
    assert_clean(app)
    rows = Store(db_path).experiments(kind="sinkrate", viewer=LOCAL)
    assert len(rows) == 1
    stored = Store(db_path).experiment(rows[0]["id"], viewer=LOCAL)["result"]
    expected = sinkrate.sink_rate_protocol(minilm, n=4, length=12, text_file=str(text))
    for kind, rate in expected.kinds.items():
        assert stored["kinds"][kind]["rate"] == pytest.approx(rate.rate)


def test_run_massive_from_the_page_without_intervention(db_path: Path, load_calls: list[str]) -> None:
    app = open_page(EXPERIMENTS)
    app.selectbox(key="mech_ma_model").select("minilm")
    app.text_area(key="mech_ma_text").set_value("The cat sat on the mat.")
    app.selectbox(key="mech_ma_arms").select("none")
    app = app.button(key="mech_ma_run").click().run()
    assert_clean(app)
    rows = Store(db_path).experiments(kind="massive", viewer=LOCAL)
    assert len(rows) == 1
    app = open_page(EXPERIMENTS, mechanism=str(rows[0]["id"]))
    assert_clean(app)
    assert "Experiment" in page_text(app) and "massive" in page_text(app)


def test_massive_intervention_on_minilm_is_an_error_box(db_path: Path, load_calls: list[str]) -> None:
    app = open_page(EXPERIMENTS)
    app.selectbox(key="mech_ma_model").select("minilm")
    app = app.button(key="mech_ma_run").click().run()
    assert not app.exception
    assert any("causal LM head" in e.value for e in app.error)
    assert Store(db_path).experiments(kind="massive", viewer=LOCAL) == []


BADGE = """
from dashboard.sections import massive_badge
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
massive_badge.render(Store().get({run_id}, viewer=LOCAL))
"""


def test_massive_badge_standalone_matches_hidden_states(db_path: Path, run_ids: dict[str, int],
                                                        minilm: sinkfix.LoadedModel, load_calls: list[str]) -> None:
    app = AppTest.from_string(BADGE.format(run_id=run_ids["cat"]), default_timeout=60).run()
    assert_clean(app)
    assert load_calls == [] and not app.metric  # a stored run's model is loaded only on request
    app = app.button[0].click().run()
    assert_clean(app)
    assert load_calls == ["minilm"]
    analysis = Store(db_path).get(run_ids["cat"], viewer=LOCAL)
    ids = torch.tensor([analysis.token_ids])
    with torch.inference_mode():
        hidden = minilm.base(input_ids=ids, output_hidden_states=True).hidden_states[1:]  # each layer's output
    peak = max(float(h.abs().max()) for h in hidden)
    assert app.metric[0].value == f"{peak:,.0f}"
    assert "Token 0" in app.caption[0].value


def test_chart_builders_keep_the_papers_figures() -> None:
    result = {"model": "m", "epsilon": 0.3, "length": 64, "paper": sinkrate.PAPER,
              "kinds": {k: {"rate": 0.5, "ci95": [0.4, 0.6], "per_layer": [0.5]} for k in sinkrate.KINDS}}
    frame = mechanism_charts.sinkrate_frame(result)
    paper = frame[frame["source"] == "paper: GPT-2-XL"].set_index("kind")["rate"]
    assert paper.to_dict() == {"natural": 77.00, "random": 70.29, "repeated": 62.28}
    assert frame[frame["source"] == "SinkFix: m"]["high"].tolist() == [60.0, 60.0, 60.0]
    spec = mechanism_charts.sinkrate_bars(result).to_dict()
    assert spec["layer"][0]["mark"]["type"] == "bar"
    heat = mechanism_charts.peak_frame([[1.0, 2.0], [3.0, 4.0]], ["a", "<b>"])
    assert heat["peak"].tolist() == [1.0, 2.0, 3.0, 4.0] and heat["token"].tolist()[-1] == "1 <b>"
