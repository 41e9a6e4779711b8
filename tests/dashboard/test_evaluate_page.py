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
from sinkfix.policy.ownership import LOCAL
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

    rows = Store(db_path).evaluations(viewer=LOCAL)
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
    assert len(Store(db_path).evaluations(viewer=LOCAL)) == 1
    assert shelf == ["smollm2-135m"]


def test_minilm_shows_cosine_and_the_no_lm_head_message(db_path: Path, shelf: list[str], minilm) -> None:
    app = run(fill(open_page(EVALUATE), "minilm", SHORT, betas="1.0, 0.0", evidence=1))
    assert_clean(app)
    text = page_text(app)
    assert "has no language-model head" in text and "smollm2-135m" in text
    assert "Cosine along the text" in text
    saved = Store(db_path).evaluations(viewer=LOCAL)[0]["result"]
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
    calibrate.save(found, "mini-heads", store, viewer=LOCAL)
    app = open_page(EVALUATE)
    table = next(d.value for d in app.dataframe if "held-out Δ target" in d.value.columns)
    assert table["name"].tolist() == ["mini-heads"] and table["held-out Δ target"].tolist() == [0.0123]
    assert table["dev baseline"].tolist() == [0.85] and table["held-out Δ random"].tolist() == [-0.002]
    app = fill(app, "minilm", SHORT, betas="", evidence=0)
    app.radio(key="ev_head_mode").set_value("A stored calibration").run()
    app.selectbox(key="ev_calibration").select("mini-heads")
    app = run(app)
    assert_clean(app)
    assert Store(db_path).evaluations(viewer=LOCAL)[0]["heads"] == [[0, 1], [2, 3]]


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
    assert Store(db_path).evaluations(viewer=LOCAL) == []


def test_unknown_model_is_an_error_box(db_path: Path, shelf: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # On the server's list but not reachable offline (a name off the list: tests/dashboard/test_security.py).
    monkeypatch.setenv("SINKFIX_API_MODELS", "minilm,smollm2-135m,no-such-org/no-such-model")
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
    saved = Store(db_path).evaluations(viewer=LOCAL)[0]["result"]
    assert (saved["n_texts"], saved["n_chunks"]) == (2, 2)
    expected = evaluate(minilm, texts, Intervention(target="first"), max_tokens=64)
    assert saved["cosine_mean"] == pytest.approx(expected.cosine_mean, abs=1e-6)
    assert app.selectbox(key=f"ev_chunk_{Store(db_path).evaluations(viewer=LOCAL)[0]['id']}") is not None

    # Unticked, the blank line stays inside one text.
    app.checkbox(key="ev_separate").uncheck()
    app = run(app)
    assert_clean(app)
    assert Store(db_path).evaluations(viewer=LOCAL)[0]["result"]["n_texts"] == 1


def test_a_file_that_is_not_utf8_is_an_error_box(db_path: Path, shelf: list[str]) -> None:
    app = fill(open_page(EVALUATE), "minilm", SHORT, betas="", evidence=0)
    app.get("file_uploader")[0].set_value(("latin.txt", "café".encode("latin-1"), "text/plain"))
    app = run(app)
    assert not app.exception
    assert [e.value for e in app.error] == ["latin.txt is not UTF-8 text"]


# ---------------------------------------------------------------- stored evaluations, STS-B, findings

STORED = {
    "model": "smollm2-135m", "target": "first", "beta": 0.0, "layers": None, "heads": None, "n_texts": 1,
    "n_chunks": 1, "n_positions": 4, "baseline_nll": 3.0, "intervened_nll": 3.5, "delta_nll": 0.5,
    "delta_nll_ci95": [0.2, 0.8], "ci_unit": "position", "kl_mean": 0.3, "top1_agreement": 0.75, "cosine_mean": 0.9,
    "target_tokens": [[0]], "target_token_text": [["The"]], "tokens": [["The", "Ġcat", "Ġsat", "Ġon", "."]],
    "per_position_kl": [[0.1, 0.7, 0.2, 0.2]],
    "sweep": [{"arm": a, "target": t, "beta": b, "intervened_nll": 3.0 + d, "delta_nll": d,
               "delta_nll_ci95": [d - 0.1, d + 0.1], "kl_mean": d, "top1_agreement": 1.0, "cosine_mean": 1.0}
              for a, t, d0 in (("target", "first", 0.5), ("random", "random", 0.05)) for b, d in ((1.0, 0.0), (0.0, d0))],
    "token_evidence": [{"index": 0, "token": "The", "att_received": 0.6, "value_norm": 0.1, "seed_label": "beneficial",
                        "delta_nll": 0.5, "kl_mean": 0.3, "top1_agreement": 0.75, "cosine_mean": 0.9,
                        "evidence_label": "beneficial"}],
}


def _chart(app, title_part: str):
    from .conftest import chart_specs

    import json
    return next((s, d) for s, d in chart_specs(app) if title_part in json.dumps(s, ensure_ascii=False))


def test_a_stored_evaluation_reopens_with_all_its_charts(db_path: Path, shelf: list[str]) -> None:
    evaluation_id = Store(db_path).save_evaluation("evaluate", STORED, viewer=LOCAL)
    app = open_page(EVALUATE, evaluation=str(evaluation_id))
    assert_clean(app)
    text = page_text(app)
    assert f"Evaluation {evaluation_id} · smollm2" in text
    for section in ("β sweep beside the controls", "KL along the text", "Per-sink evidence"):
        assert section in text, section
    _, data = _chart(app, "KL(p_orig")
    bars = next(d for d in data.values() if "KL" in d.columns)
    assert bars["KL"].tolist() == pytest.approx(STORED["per_position_kl"][0])
    assert bars["token"].tolist()[:2] == ["The", "␣cat"]  # one token display: Ġ is ␣
    assert "Predictions need the model's forward passes" in text
    assert shelf == []  # reopening loads no model
    # The stored table links to the same deep link.
    table = next(d.value for d in app.dataframe if "open" in d.value.columns and "kind" in d.value.columns)
    assert table["open"].tolist() == [f"evaluate?evaluation={evaluation_id}"]


def test_unknown_evaluation_and_calibration_links_are_error_boxes(db_path: Path, shelf: list[str]) -> None:
    app = open_page(EVALUATE, evaluation="77")
    assert not app.exception and app.error[0].value.startswith("no evaluation with id 77")
    app = open_page(EVALUATE, evaluation="x")
    assert not app.exception and "is not an evaluation id" in app.error[0].value
    app = open_page(EVALUATE, calibration="nope")
    assert not app.exception and app.error[0].value.startswith("no calibration named 'nope'")


def test_a_stored_calibration_reopens_with_its_head_search_and_heldout_forest(db_path: Path, shelf: list[str]) -> None:
    trials = [calibrate.HeadTrial(0, 1, 0.4, 0.86, 0.01, True), calibrate.HeadTrial(1, 0, 0.2, 0.84, -0.01, False)]
    found = calibrate.Calibration("minilm", "sts", "spearman", Intervention(target="first"), ((0, 1),), trials,
                                  0.85, 100, 200, {"target": {"delta_spearman": 0.0123, "delta_ci95": [0.001, 0.02]},
                                                   "random": {"delta_spearman": -0.002, "delta_ci95": [-0.01, 0.0]}})
    calibrate.save(found, "mini", Store(db_path), viewer=LOCAL)
    app = open_page(EVALUATE, calibration="mini")
    assert_clean(app)
    assert "Calibration @mini · minilm" in page_text(app)
    _, data = _chart(app, "Dev gain")
    grid = next(iter(data.values()))
    assert float(grid[(grid["layer"] == 0) & (grid["head"] == 1)]["gain"].iloc[0]) == pytest.approx(0.01)
    _, data = _chart(app, "ΔSpearman")
    forest = next(d for d in data.values() if "delta" in d.columns)
    assert sorted(forest["delta"].tolist()) == pytest.approx([-0.002, 0.0123])


def test_findings_draw_every_stored_study_with_controls_beside(db_path: Path, shelf: list[str]) -> None:
    store = Store(db_path)
    first = store.save_evaluation("evaluate", STORED, viewer=LOCAL)
    sts_id = store.save_evaluation("sts", {"model": "minilm", "target": "first", "beta": 0.0, "n_pairs": 50,
                                           "baseline_spearman": 0.8, "intervened_spearman": 0.79,
                                           "delta_spearman": -0.01, "delta_ci95": [-0.02, 0.0]}, viewer=LOCAL)
    app = open_page(EVALUATE)
    assert_clean(app)
    import pandas as pd

    spec, data = _chart(app, "per study, controls beside")
    frame = pd.concat([d for d in data.values() if "delta" in d.columns and "study" in d.columns])
    nll = frame[frame["metric"].str.startswith("ΔNLL")]
    # The evaluation at its own β (0): the target and the random control from its sweep.
    assert sorted(zip(nll["arm"], nll["delta"])) == [("random (control)", pytest.approx(0.05)),
                                                     ("target: first", pytest.approx(0.5))]
    assert all(f"evaluation {first}" in s for s in nll["study"])
    sts = frame[frame["metric"].str.startswith("ΔSpearman")]
    assert sts["delta"].tolist() == [pytest.approx(-0.01)] and f"evaluation {sts_id}" in sts["study"].iloc[0]


def test_sts_mode_scores_the_pairs_and_saves(db_path: Path, shelf: list[str], minilm, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sinkfix.experiments.sts import load_sts, sts
    from sinkfix.policy.files import REFUSAL

    monkeypatch.setenv("SINKFIX_DATA_DIRS", str(tmp_path))  # STS-B is in a data folder (docs/security.md)

    lines = [f"genre\tfile\tyear\t{i}\t{s:.1f}\t{a}\t{b}" for i, (s, a, b) in enumerate([
        (5.0, "A man is playing a guitar.", "A man plays the guitar."),
        (0.5, "A cat sleeps on the sofa.", "The stock market fell sharply."),
        (3.0, "A woman is cutting onions.", "A woman slices an onion."),
        (1.0, "Kids play football outside.", "A chef cooks pasta."),
        (4.0, "The plane is landing.", "An airplane lands on the runway."),
        (2.0, "A dog runs in the park.", "A man reads in the park."),
    ])]
    (tmp_path / "sts-test.csv").write_text("\n".join(lines) + "\n")
    app = open_page(EVALUATE)
    app.text_input(key="sts_data").set_value(str(tmp_path))
    app.number_input(key="sts_limit").set_value(10)
    app = app.button(key="sts_run").click().run()
    assert_clean(app)
    row = Store(db_path).evaluations(viewer=LOCAL)[0]
    assert row["kind"] == "sts" and row["model"] == "minilm"
    expected = sts(minilm, load_sts(tmp_path, "test"), Intervention(target="first", beta=0.0))
    assert row["result"]["baseline_spearman"] == pytest.approx(expected.baseline_spearman, abs=1e-9)
    assert row["result"]["delta_spearman"] == pytest.approx(expected.delta, abs=1e-9)
    assert f"Evaluation {row['id']} · STS-B · minilm" in page_text(app)
    # A wrong path is an error box, and no model is loaded for it: the policy's one line.
    app.text_input(key="sts_data").set_value(str(tmp_path / "missing"))
    app = app.button(key="sts_run").click().run()
    assert not app.exception and app.error[0].value == REFUSAL
