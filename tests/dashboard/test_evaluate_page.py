"""Evaluate: the page runs the intervention, the sweep with controls and the evidence, saves the
evaluation, and turns user mistakes into error boxes. Numbers are checked against the core."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import sinkfix
from dashboard import services
from sinkfix.experiments import calibrate
from sinkfix import models
from sinkfix.experiments.evaluate import evaluate
from sinkfix.experiments.intervene import Intervention
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

EVALUATE = "views/evaluate.py"
SHORT = "The cat sat on the mat."  # 7 SmolLM2 tokens: every forward is quick


@pytest.fixture()
def shelf(minilm: sinkfix.LoadedModel, smollm2: sinkfix.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Serve both embedded models from the session fixtures; record which names the page asked for."""
    calls: list[str] = []
    real = models.load_model
    held = {"minilm": minilm, "smollm2-135m": smollm2}

    def serving(name: str, progress=None):
        calls.append(name)
        return held[name] if name in held else real(name, progress=progress)

    monkeypatch.setattr(models.loading, "load_model", serving)
    services.model_shelf.clear()
    return calls


def fill(app: AppTest, model: str, text: str, target: str = "first", betas: str = "1.0, 0.0",
         evidence: int = 2) -> AppTest:
    app.selectbox(key="ev_model").select(model)
    app.text_area(key="ev_text").set_value(text)
    app.selectbox(key="ev_target").select(target)
    app.text_input(key="ev_sweep").set_value(betas)
    app.number_input(key="ev_evidence").set_value(evidence)
    return app


def run(app: AppTest) -> AppTest:
    return app.button(key="ev_run").click().run()


def test_page_renders_without_running_anything(db_path: Path, shelf: list[str]) -> None:
    app = open_page(EVALUATE)
    assert_clean(app)
    text = page_text(app)
    assert "Stored calibrations" in text and "Recent evaluations" in text
    assert shelf == []  # nothing loads until Evaluate is clicked


def test_smollm2_first_shows_every_section_and_saves(db_path: Path, shelf: list[str], smollm2) -> None:
    app = fill(open_page(EVALUATE), "smollm2-135m", SHORT)
    app.slider(key="ev_beta").set_value(0.0)
    app = run(app)
    assert_clean(app)
    text = page_text(app)
    for section in ("β sweep beside the controls", "KL along the text", "Top-5 predictions before and after",
                    "Per-sink evidence", "Recent evaluations"):
        assert section in text, section

    rows = Store(db_path).evaluations()
    assert len(rows) == 1 and rows[0]["model"] == "smollm2-135m" and rows[0]["target"] == "first"
    saved = rows[0]["result"]
    # The saved numbers are the core's, computed independently here.
    expected = evaluate(smollm2, SHORT, Intervention(target="first", beta=0.0), max_tokens=64)
    assert saved["baseline_nll"] == pytest.approx(expected.baseline_nll, abs=1e-6)
    assert saved["intervened_nll"] == pytest.approx(expected.intervened_nll, abs=1e-6)
    assert saved["kl_mean"] == pytest.approx(expected.kl_mean, abs=1e-6)
    assert saved["target_tokens"] == [[0]]
    assert rows[0]["delta"] == pytest.approx(expected.delta_nll, abs=1e-6)
    # The sweep holds the target and both controls at each β; β = 1 changes nothing.
    assert sorted((p["arm"], p["beta"]) for p in saved["sweep"]) == [
        ("random", 0.0), ("random", 1.0), ("target", 0.0), ("target", 1.0)]  # target first: its control is token 0 itself
    for point in saved["sweep"]:
        if point["beta"] == 1.0:
            assert point["kl_mean"] == pytest.approx(0.0, abs=1e-6) and point["delta_nll"] == pytest.approx(0.0, abs=1e-6)
    target0 = next(p for p in saved["sweep"] if p["arm"] == "target" and p["beta"] == 0.0)
    assert target0["intervened_nll"] == pytest.approx(expected.intervened_nll, abs=1e-6)
    assert saved["token_evidence"] and all(r["evidence_label"] for r in saved["token_evidence"])

    # The per-position KL chart carries the stored per-position KL; predictions sit on a chosen position.
    kl = np.array(saved["per_position_kl"][0])
    assert np.allclose(kl, np.array(expected.per_position_kl[0]), atol=1e-6)
    predictions = [d.value for d in app.dataframe if list(d.value.columns)[:2] == ["rank", "before"]]
    assert len(predictions) == 1 and len(predictions[0]) == 5
    assert predictions[0]["p_before"].is_monotonic_decreasing

    # Picking another position reruns without recomputing the evaluation and shows its predictions.
    picker = next(s for s in app.selectbox if s.key and s.key.startswith("ev_position_"))
    picker.select(1)
    app = app.run()
    assert_clean(app)
    assert len(Store(db_path).evaluations()) == 1
    assert shelf == ["smollm2-135m"]


def test_minilm_shows_cosine_and_the_no_lm_head_message(db_path: Path, shelf: list[str], minilm) -> None:
    app = run(fill(open_page(EVALUATE), "minilm", SHORT, betas="1.0, 0.0", evidence=1))
    assert_clean(app)
    text = page_text(app)
    assert "has no language-model head" in text and "smollm2-135m" in text
    assert "Cosine along the text" in text
    saved = Store(db_path).evaluations()[0]["result"]
    assert saved["baseline_nll"] is None and saved["kl_mean"] is None
    expected = evaluate(minilm, SHORT, Intervention(target="first"), max_tokens=64)
    assert saved["cosine_mean"] == pytest.approx(expected.cosine_mean, abs=1e-6)
    cosine_metric = next(m for m in app.metric if m.label == "Cosine of final hidden states")
    assert cosine_metric.value == f"{expected.cosine_mean:.4f}"
    # The switch button offers the model with an LM head.
    app = app.button(key="ev_switch").click().run()
    assert app.selectbox(key="ev_model").value == "smollm2-135m"


def test_a_stored_calibration_supplies_the_heads(db_path: Path, shelf: list[str]) -> None:
    store = Store(db_path)
    found = calibrate.Calibration("minilm", "sts", "spearman", Intervention(target="first"), ((0, 1), (2, 3)), [],
                                  0.85, 100, 200, {"target": {"delta_spearman": 0.0123, "delta_ci95": [0.001, 0.02]},
                                                   "random": {"delta_spearman": -0.002, "delta_ci95": [-0.01, 0.0]},
                                                   "first": {"delta_spearman": 0.0123, "delta_ci95": [0.001, 0.02]}})
    calibrate.save(found, "mini-heads", store)
    app = open_page(EVALUATE)
    table = next(d.value for d in app.dataframe if "held-out Δ target" in d.value.columns)
    assert table["name"].tolist() == ["mini-heads"] and table["held-out Δ target"].tolist() == [0.0123]
    assert table["dev baseline"].tolist() == [0.85] and table["held-out Δ random"].tolist() == [-0.002]
    app = fill(app, "minilm", SHORT, betas="", evidence=0)
    app.radio(key="ev_head_mode").set_value("A stored calibration").run()
    app.selectbox(key="ev_calibration").select("mini-heads")
    app = run(app)
    assert_clean(app)
    assert Store(db_path).evaluations()[0]["heads"] == [[0, 1], [2, 3]]


@pytest.mark.parametrize(("change", "message"), [
    ({"text": "   "}, "the text is empty: give at least one word to evaluate"),
    ({"betas": "1.0, 1.5"}, "β must be between 0 and 1, got 1.5 in the sweep"),
    ({"target": "tokens:I,J", "tokens": "2,x"}, "token index 'x' in 'tokens:2,x' is not a whole number >= 0"),
    ({"target": "tokens:I,J", "tokens": "40"}, "token index 40 is past the end of every input"),
    ({"heads": "3-7"}, "head '3-7' must look like LAYER:HEAD, for example 3:7"),
])
def test_user_mistakes_are_error_boxes(db_path: Path, shelf: list[str], change: dict, message: str) -> None:
    app = fill(open_page(EVALUATE), "minilm", change.get("text", SHORT), target=change.get("target", "first"),
               betas=change.get("betas", ""), evidence=0)
    if "tokens" in change:
        app.run()
        app.text_input(key="ev_tokens").set_value(change["tokens"])
    if "heads" in change:
        app.radio(key="ev_head_mode").set_value("A list of heads (L:H)").run()
        app.text_input(key="ev_heads").set_value(change["heads"])
    app = run(app)
    assert not app.exception
    assert len(app.error) == 1 and app.error[0].value.startswith(message), [e.value for e in app.error]
    assert Store(db_path).evaluations() == []


def test_unknown_model_is_an_error_box(db_path: Path, shelf: list[str]) -> None:
    app = open_page(EVALUATE)
    app.selectbox(key="ev_model").select("Other: hub id or local path").run()
    app.text_input(key="ev_model_other").set_value("no-such-org/no-such-model")
    app = run(app)
    assert not app.exception
    assert len(app.error) == 1 and "no-such-org/no-such-model" in app.error[0].value


def test_an_uploaded_file_with_blank_lines_is_several_texts(db_path: Path, shelf: list[str], minilm) -> None:
    texts = ["The cat sat on the mat.", "A dog barked\nat the moon."]
    app = fill(open_page(EVALUATE), "minilm", "ignored: the file replaces this box", betas="", evidence=0)
    app.get("file_uploader")[0].set_value(("two.txt", "\n\n".join(texts).encode(), "text/plain"))
    app = run(app)
    assert_clean(app)
    saved = Store(db_path).evaluations()[0]["result"]
    assert (saved["n_texts"], saved["n_chunks"]) == (2, 2)
    expected = evaluate(minilm, texts, Intervention(target="first"), max_tokens=64)
    assert saved["cosine_mean"] == pytest.approx(expected.cosine_mean, abs=1e-6)
    assert app.selectbox(key=f"ev_chunk_{Store(db_path).evaluations()[0]['id']}") is not None

    # Unticked, the blank line stays inside one text.
    app.checkbox(key="ev_separate").uncheck()
    app = run(app)
    assert_clean(app)
    assert Store(db_path).evaluations()[0]["result"]["n_texts"] == 1


def test_a_file_that_is_not_utf8_is_an_error_box(db_path: Path, shelf: list[str]) -> None:
    app = fill(open_page(EVALUATE), "minilm", SHORT, betas="", evidence=0)
    app.get("file_uploader")[0].set_value(("latin.txt", "café".encode("latin-1"), "text/plain"))
    app = run(app)
    assert not app.exception
    assert [e.value for e in app.error] == ["latin.txt is not UTF-8 text"]
