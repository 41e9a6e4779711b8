"""Issue 22's page defects, each with the AppTest that would have caught it: thresholds kept at the run's
precision on a scale that suits the text, the preset label, re-run provenance, bad deep links as errors,
Compare's settings and picker, a failed run's reason outside its status box, the Mechanisms deep link's
tab, the massive-activation refusal, a CLI-stored evaluation reopened complete, ?evaluation=N after a
run, and tables without raw timestamps or "None"."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import sinkfix
from dashboard import services, units
from dashboard.sections import experiment_store, thresholds
from dashboard.sections.evaluate_stored import evaluations_frame
from sinkfix import models
from sinkfix.engines.local import CorpusLine, run_batch
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

ANALYZE, DRILLDOWN, COMPARE, CORPUS = "views/analyze.py", "views/drilldown.py", "views/compare.py", "views/corpus.py"
EXPERIMENTS, EVALUATE, HOME = "views/experiments.py", "views/evaluate.py", "views/home.py"


def _store_with(db_path: Path, analysis: sinkfix.Analysis, **settings) -> int:
    changed = dataclasses.replace(analysis, settings=dataclasses.replace(analysis.settings, **settings))
    return Store(db_path).save(changed, viewer=LOCAL)


# ---------------------------------------------------------------- Analyze


def test_thresholds_keep_the_runs_precision_and_slide_in_even_shares(db_path: Path, seed_analyses, load_calls) -> None:
    cat = seed_analyses["cat"]
    run_id = _store_with(db_path, cat, tau_att=0.035, tau_norm=0.835)
    app = open_page(ANALYZE, run=str(run_id))
    assert_clean(app)
    assert app.number_input(key="an_tau_att").value == 0.035  # a 0.01-step slider showed 0.04
    assert app.number_input(key="an_tau_norm").value == 0.835
    slider = next(w for w in app.select_slider if w.key.startswith(f"an_tau_att_x_{cat.n_tokens}_"))
    assert "T = 9" in slider.label and slider.value == 0.25  # the stop nearest 0.035 × 9 = 0.315
    slider.set_value(2.0)
    app = app.run()
    assert app.number_input(key="an_tau_att").value == thresholds.as_share(2.0, cat.n_tokens) == pytest.approx(2 / 9)
    # On a 366-token text the even share is 0.0027: the slider's stops reach it and go below.
    stops = thresholds.multiples(366)
    assert min(stops) / 366 < 1 / 366 < max(stops) / 366 and max(stops) / 366 <= 1


def test_the_preset_label_follows_the_text(db_path: Path, load_calls) -> None:
    app = open_page(ANALYZE)
    assert "The box holds the example “Seed example ([MASK] sentence)”." in page_text(app)
    app.text_area(key="an_text").set_value("A text of my own.")
    app = app.run()
    assert "The box holds your own text." in page_text(app) and "Seed example" not in page_text(app)
    app = app.button(key="an_example_1").click().run()
    assert app.text_area(key="an_text").value.startswith("The quick brown fox")
    assert "The box holds the example “Plain sentence”." in page_text(app)


def test_a_rerun_names_what_changed(run_ids: dict[str, int], db_path: Path, minilm, load_calls) -> None:
    original = run_ids["cat"]
    app = open_page(ANALYZE, run=str(original))
    app.number_input(key="an_tau_att").set_value(0.2)
    app = app.button(key="an_rerun").click().run()
    assert_clean(app)
    assert f"Re-run of run {original} with changed settings: τ_att 0.05 → 0.2." in page_text(app)
    app = open_page(DRILLDOWN, run=app.query_params["run"])
    assert f"Re-run of run {original} with changed settings: τ_att 0.05 → 0.2." in page_text(app)
    assert "Recomputed from" not in page_text(app)


def test_recomputed_maps_are_not_called_a_rerun(db_path: Path, seed_analyses, load_calls) -> None:
    cat = seed_analyses["cat"]
    store = Store(db_path)
    summary_only = store.save(dataclasses.replace(cat, maps=None, corrected_maps=None), viewer=LOCAL)
    with_maps = store.save(cat, cache_key="other", parent_run_id=summary_only, viewer=LOCAL)
    app = open_page(DRILLDOWN, run=str(with_maps))
    assert_clean(app)
    assert f"Maps recomputed from run {summary_only}, which stored summaries only" in page_text(app)


# ---------------------------------------------------------------- deep links


@pytest.mark.parametrize("layer, head, message", [("9", "0", "layer 9 is out of range"),
                                                  ("0", "40", "head 40 is out of range"),
                                                  ("x", "0", "'x' is not a layer number")])
def test_a_bad_head_link_is_an_error_not_layer_0(run_ids: dict[str, int], layer: str, head: str, message: str) -> None:
    app = open_page(DRILLDOWN, run=str(run_ids["cat"]), layer=layer, head=head)
    assert not app.exception
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert "attention map" not in page_text(app)  # no other head is shown in its place


def test_a_bad_corpus_link_is_an_error_not_the_first_corpus(db_path: Path, minilm, load_calls) -> None:
    store = Store(db_path)
    run_batch([CorpusLine(1, "A dog ran.")], minilm, None, store, "pets", source="pets.txt", progress=False, viewer=LOCAL)
    app = open_page(CORPUS, corpus="nope")
    assert not app.exception
    assert any("No corpus is named 'nope'" in e.value and "pets" in e.value for e in app.error)
    assert "Sink rate per head" not in page_text(app)
    app = open_page(CORPUS, corpus="pets")
    assert_clean(app)
    assert "UTC" in app.dataframe[0].value["created_at"][0] and "T" not in app.dataframe[0].value["created_at"][0][:11]


def test_a_mechanism_link_opens_the_mechanisms_tab(db_path: Path, load_calls) -> None:
    experiment_id = Store(db_path).save_experiment("massive", _massive_result(), "test", 4100.0, viewer=LOCAL)
    app = open_page(EXPERIMENTS, mechanism=str(experiment_id))
    assert_clean(app)
    assert app.get("tab_container")[0].proto.tab_container.default_tab_index == 1
    assert open_page(EXPERIMENTS).get("tab_container")[0].proto.tab_container.default_tab_index == 0
    text = page_text(app)
    assert "1 chunk of up to" in text and "1 chunks" not in text
    assert "4,100×" in [m.value for m in app.metric]


def _massive_result() -> dict:
    top = {"max_abs": 2543.2, "value": -2543.2, "layer": 2, "dim": 1415, "token": 0, "token_text": "First",
           "ratio": 4100.0, "median_abs": 0.62}
    arm = {"name": "zero", "baseline_nll": 3.0, "intervened_nll": 9.0, "delta_nll": 6.0, "ci95": [5.0, 7.0],
           "ci_unit": "position", "n_positions": 40, "baseline_ppl": 20.1, "intervened_ppl": 8103.1}
    return {"model": "smollm2-135m", "bos": "auto", "tokens": ["First", "ĠCitizen"], "layers": [{"layer": 2}],
            "top": top, "top_features": [dict(top, max_abs=2543.2)], "peak": [[2543.2, 1.0]], "first_massive_layer": 2,
            "massive_dims": [1415], "link": {"spearman_sink_rate": None, "spearman_value_norm": None,
                                             "value_norm_layer": 1},
            "intervention": {"layer": 2, "n_chunks": 1, "max_tokens": 48, "reference": "none (zero arm only)",
                             "arms": {"zero": arm}}, "notes": []}


# ---------------------------------------------------------------- Compare


def test_compare_shows_each_runs_thresholds(run_ids: dict[str, int]) -> None:
    app = open_page(COMPARE, runs=f"{run_ids['seed']},{run_ids['cat']}")
    assert_clean(app)
    overview = app.dataframe[0].value
    assert overview["τ_att"].tolist() == ["0.1", "0.05"] or overview["τ_att"].tolist()[1] == "0.05"
    assert overview["τ_norm"].tolist()[1] == "0.85"
    assert "settings differ" in page_text(app) and "τ_att" in page_text(app)


def test_the_compare_picker_matches_a_prefix_with_no_select_all(run_ids: dict[str, int]) -> None:
    app = open_page(COMPARE)
    picker = app.multiselect(key="cmp_recent")
    assert picker.options[0].startswith(f"#{min(run_ids.values())} ")  # ascending: "#3" comes before "#31"
    proto = str(picker.proto)
    assert "filter_mode: FILTER_MODE_PREFIX" in proto  # "#3" matches "#3 ·…" and "#31 ·…" by prefix only
    assert "select_all: 0" in proto  # no "Select 2 matches" entry for Enter to pick


# ---------------------------------------------------------------- failed runs, the massive refusal


@pytest.fixture()
def smol_shelf(minilm, smollm2, monkeypatch: pytest.MonkeyPatch) -> None:
    held = {"minilm": minilm, "smollm2-135m": smollm2}
    monkeypatch.setattr(models.loading, "load_model", lambda name, progress=None, **kw: held[name])
    services.model_shelf.clear()


def _errors_outside_status(app) -> list[str]:
    inside = {e.value for block in app.get("status") for e in block.error}
    return [e.value for e in app.error if e.value not in inside]


def test_the_mean_without_a_reference_is_refused_with_the_reason_shown(db_path: Path, smol_shelf) -> None:
    app = open_page(EXPERIMENTS)
    app.selectbox(key="mech_ma_arms").select("zero and mean")
    app = app.button(key="mech_ma_run").click().run()
    assert not app.exception
    shown = _errors_outside_status(app)
    assert any("needs a reference text" in e for e in shown), [e.value for e in app.error]
    assert Store(db_path).experiments(kind="massive", viewer=LOCAL) == []
    status = app.get("status")[0]
    assert "failed (the reason is below)" in status.label and not status.error  # the box holds no hidden reason


# ---------------------------------------------------------------- Evaluate


def test_a_cli_stored_evaluation_reopens_complete(db_path: Path, load_calls) -> None:
    # What `python -m sinkfix evaluate` stores: means and target tokens, no tokens or per-position KL.
    cli = {"model": "smollm2-135m", "target": "first", "beta": 0.4, "layers": None, "heads": None, "n_texts": 1,
           "n_chunks": 1, "n_positions": 13, "baseline_nll": 4.6685, "intervened_nll": 6.7972, "delta_nll": 2.1287,
           "delta_nll_ci95": [0.3997, 3.9975], "ci_unit": "position", "kl_mean": 3.1855, "top1_agreement": 0.385,
           "cosine_mean": 0.5871, "target_tokens": [[0]], "target_token_text": [["The"]]}
    evaluation_id = Store(db_path).save_evaluation("evaluate", cli, viewer=LOCAL)
    app = open_page(EVALUATE, evaluation=str(evaluation_id))
    assert_clean(app)
    text = page_text(app)
    assert "1 target token redistributed: 0 The" in text
    assert "stored by the CLI" in text and "cannot be placed" not in text
    assert "β=0\\.4" in text and "beta" not in text  # the header is escaped Markdown
    assert "38.5 %" in [m.value for m in app.metric]


def test_an_evaluation_run_on_the_page_goes_into_the_url(db_path: Path, load_calls) -> None:
    """Analyze and Experiments put their result in the URL; Evaluate now does too, so a reload keeps it."""
    app = open_page(EVALUATE)
    app.selectbox(key="ev_model").select("minilm")
    app.text_area(key="ev_text").set_value("The cat sat on the mat.")
    app.text_input(key="ev_sweep").set_value("")
    app.number_input(key="ev_evidence").set_value(0)
    app = app.button(key="ev_run").click().run()
    assert_clean(app)
    stored = Store(db_path).evaluations(limit=1, viewer=LOCAL)
    assert stored and app.query_params["evaluation"] == str(stored[0]["id"])
    assert f"Evaluation {stored[0]['id']} · minilm" in page_text(app)


def test_stored_evaluations_table_has_the_link_first_and_no_none() -> None:
    rows = [{"id": 3, "created_at": "2026-11-29T22:31:52+00:00", "kind": "evaluate", "model": "minilm",
             "target": "first", "beta": 0.4, "heads": None, "baseline": None, "intervened": None, "delta": None,
             "ci_low": None, "ci_high": None, "result": {"cosine_mean": 0.91}}]
    frame = evaluations_frame(rows)
    assert list(frame.columns)[0] == "open" and frame["open"][0] == "evaluate?evaluation=3"
    assert frame["created"][0] == "2026-11-29 22:31 UTC"
    assert "None" not in frame.astype(str).to_numpy().ravel().tolist()


def test_stored_experiments_headline_carries_its_unit() -> None:
    rows = [{"id": 1, "created_at": "2026-11-29T10:00:00+00:00", "kind": "streaming", "model": "m", "label": "x",
             "headline": 23.4123},
            {"id": 2, "created_at": "2026-11-29T11:00:00+00:00", "kind": "sinkrate", "model": "m", "label": None,
             "headline": 0.45}]
    frame = experiment_store.stored_frame(rows, "experiment")
    assert frame["headline"].tolist() == ["Sink₁ 45.0 %", "best ppl 23.41"]
    assert frame["created"].tolist()[1] == "2026-11-29 10:00 UTC" and frame["label"].tolist()[0] == units.MISSING


def test_home_has_the_units_glossary(db_path: Path, load_calls) -> None:
    app = open_page(HOME)
    assert_clean(app)
    assert "Units on every page" in page_text(app) and "nats" in page_text(app)
