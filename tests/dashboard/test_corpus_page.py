"""Corpus page: corpora made through the core, the per-head heatmap, the sink-token table, links to runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sinkfix
from sinkfix.plots import analysis as charts
from sinkfix.engines.local import BatchResult, CorpusLine, run_batch
from sinkfix.analysis.corpus import FIRST_TOKEN
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

CORPUS = "views/corpus.py"
PETS = ["The cat sat on the mat.", "A dog ran.", "Birds fly south in winter."]


@pytest.fixture()
def pets(db_path: Path, minilm: sinkfix.LoadedModel, load_calls) -> BatchResult:
    store = Store(db_path)
    lines = [CorpusLine(n, text) for n, text in zip((1, 2, 4), PETS)]
    result = run_batch(lines, minilm, None, store, "pets", source="pets.txt", progress=False, viewer=LOCAL)
    store.close()
    return result


def vega_specs(app) -> list[dict]:
    return [json.loads(e.proto.spec) for e in app.get("vega_lite_chart")]


def test_no_corpora_explains_how_to_make_one(db_path: Path, load_calls) -> None:
    app = open_page(CORPUS)
    assert_clean(app)
    assert "No corpora yet" in page_text(app) and "sinkfix batch" in page_text(app)


def test_corpus_page_shows_the_summary_and_links_runs(pets: BatchResult, db_path: Path) -> None:
    app = open_page(CORPUS)
    assert_clean(app)
    listing, types, runs = (d.value for d in app.dataframe)
    assert list(listing["name"]) == ["pets"] and list(listing["n_runs"]) == [3]
    # The token-type table is the stored summary's.
    summary = pets.summary
    assert list(types["token"]) == [t.token for t in summary.token_types] and types["token"][0] == FIRST_TOKEN
    assert list(types["sinks"]) == [t.sinks for t in summary.token_types]
    np.testing.assert_allclose(types["mean_value_norm"], [t.mean_value_norm for t in summary.token_types])
    # The heatmap of the per-head sink rate, and the metrics above it.
    titles = [json.dumps(s.get("title", ""), ensure_ascii=False) for s in vega_specs(app)]
    assert any("Sink rate per head over 3 inputs" in t for t in titles)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Inputs"] == "3" and "**Model:** minilm" in page_text(app)
    assert metrics["Heads that sink on every input"] == f"{int((summary.head_sink_rate == 1).sum())} of 72"
    # Inputs in file order, each linked to its drill-down; Compare links the two chosen runs.
    ids = [r["run_id"] for r in Store(db_path).corpus_runs(pets.corpus_id, viewer=LOCAL)]
    assert list(runs["line_no"]) == [1, 2, 4] and list(runs["run_id"]) == ids
    assert list(runs["open"]) == [f"drilldown?run={i}" for i in ids]
    compare = [link.proto for link in app.get("page_link") if "compare" in link.proto.page]
    assert [link.query_string for link in compare] == [f"runs={ids[0]}%2C{ids[1]}"]
    app.selectbox(key="co_second").select(ids[2]).run()
    compare = [link.proto for link in app.get("page_link") if "compare" in link.proto.page]
    assert [link.query_string for link in compare] == [f"runs={ids[0]}%2C{ids[2]}"]


def test_deep_link_picks_the_corpus_and_an_unfinished_one_says_so(pets: BatchResult, db_path: Path,
                                                                   minilm) -> None:
    store = Store(db_path)
    run_batch([CorpusLine(1, "A dog ran.")], minilm, sinkfix.AnalysisSettings(epsilon=0.5), store, "one",
              progress=False, viewer=LOCAL)
    store.save_corpus_summary(pets.corpus_id, None)  # as an interrupted batch leaves it
    app = open_page(CORPUS, corpus="one")
    assert_clean(app)
    assert app.selectbox(key="corpus").value == "one"
    assert {m.label: m.value for m in app.metric}["Inputs"] == "1"
    assert "ε 0.5" in page_text(app)
    app = open_page(CORPUS, corpus="pets")
    assert not app.exception
    assert "did not finish" in app.warning[0].value
    assert {m.label: m.value for m in app.metric}["Inputs"] == "3"  # computed from the stored lines


def test_corpus_chart_builders_carry_the_summary(pets: BatchResult) -> None:
    summary = pets.summary
    chart = charts.corpus_sink_grid(summary.head_sink_rate, summary.head_mean_top_alpha, 0.3, 3)
    data = chart.data
    grid = np.zeros((6, 12))
    grid[data["layer"], data["head"]] = data["sink_rate"]
    np.testing.assert_array_equal(grid, summary.head_sink_rate)
    assert chart.to_dict()["encoding"]["color"]["scale"]["domain"] == [0.0, 1.0]
    frame = pd.DataFrame([t.to_dict() for t in summary.token_types])
    spec = charts.sink_token_bars(frame).to_dict()
    assert spec["encoding"]["y"]["sort"] == [t.token for t in summary.token_types]
