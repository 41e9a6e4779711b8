"""Compare: ?runs=ID1,ID2 shows both runs, says when token lists differ, and diffs heads of one model."""
from __future__ import annotations

import json

import numpy as np

import sinkfix
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

COMPARE = "views/compare.py"


def test_compare_without_runs_asks_for_them(run_ids: dict[str, int]) -> None:
    app = open_page(COMPARE)
    assert_clean(app)
    assert "at least two run ids" in page_text(app)


def test_compare_link_shows_both_runs(run_ids: dict[str, int], seed_analyses) -> None:
    first, second = run_ids["seed"], run_ids["cat"]
    app = open_page(COMPARE, runs=f"{first},{second}")
    assert_clean(app)
    overview = app.dataframe[0].value
    assert list(overview["run"]) == [first, second]
    assert list(overview["tokens"]) == [15, 9]
    assert "The token lists differ" in page_text(app)  # different texts: aligned by position, and said so
    # Sinks table: every non-neutral token of both runs, with its label.
    sinks = app.dataframe[1].value
    for name, run_id in (("seed", first), ("cat", second)):
        analysis = seed_analyses[name]
        flagged = {i for i, label in enumerate(analysis.labels) if label != "neutral"}
        listed = sinks[sinks["run"] == run_id]
        assert flagged <= set(listed["index"])
        assert list(listed["label"]) == [analysis.labels[i] for i in listed["index"]]
    # One difference grid (same model), whose values are the stored per-head differences.
    specs = [json.loads(e.proto.spec) for e in app.get("vega_lite_chart")]
    assert any(f"run {second} − run {first}" in json.dumps(s.get("title", ""), ensure_ascii=False) for s in specs)


def test_same_text_gives_no_token_warning(db_path, minilm: sinkfix.LoadedModel, load_calls) -> None:
    store = Store(db_path)
    text = "Attention sinks soak up attention."
    a = store.save(sinkfix.analyze(text, minilm))
    b = store.save(sinkfix.analyze(text, minilm, sinkfix.AnalysisSettings(tau_att=0.03)))
    app = open_page(COMPARE, runs=f"{a},{b}")
    assert_clean(app)
    assert "same" in page_text(app) and "The token lists differ" not in page_text(app)
    assert np.isfinite(app.dataframe[0].value["tokens"]).all()


def test_compare_errors_are_error_boxes(run_ids: dict[str, int]) -> None:
    app = open_page(COMPARE, runs=f"{run_ids['seed']},999")
    assert not app.exception and "no run with id 999" in app.error[0].value
    app = open_page(COMPARE, runs="1,2,3,4,5")
    assert not app.exception and "2 to 4 runs" in app.error[0].value


def test_same_text_on_two_models(db_path, minilm: sinkfix.LoadedModel, smollm2: sinkfix.LoadedModel,
                                 load_calls) -> None:
    store = Store(db_path)
    text = "The cat sat on the mat."
    a, b = store.save(sinkfix.analyze(text, minilm)), store.save(sinkfix.analyze(text, smollm2))
    app = open_page(COMPARE, runs=f"{a},{b}")
    assert_clean(app)
    assert list(app.dataframe[0].value["model"]) == ["minilm", "smollm2-135m"]
    text_shown = page_text(app)
    assert "The token lists differ" in text_shown  # WordPiece vs byte-level BPE
    assert "Per-head differences need runs of the same model" in text_shown
