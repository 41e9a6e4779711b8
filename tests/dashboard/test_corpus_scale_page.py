"""Corpus page at scale (pages of lines, no blob decoded) and the drill-down's "recompute maps"."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import sinkfix
from sinkfix.engines.common import CorpusLine
from sinkfix.engines.local import run_batch
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store, codec
from tests.synthetic_corpus import fill_synthetic_corpus

from .conftest import assert_clean, open_page, page_text

CORPUS = "views/corpus.py"
DRILLDOWN = "views/drilldown.py"


def test_a_large_corpus_is_paged_and_no_blob_is_decoded(db_path: Path, load_calls, monkeypatch) -> None:
    fill_synthetic_corpus(Store(db_path), "big", 250)
    decoded = []
    real = codec.rebuild
    monkeypatch.setattr(codec, "rebuild", lambda *a, **k: decoded.append(1) or real(*a, **k))
    app = open_page(CORPUS, corpus="big")
    assert_clean(app)
    listing, types, runs = (d.value for d in app.dataframe)
    assert list(listing["n_runs"]) == [250]
    assert {m.label: m.value for m in app.metric}["Inputs"] == "250"
    assert list(runs["line_no"]) == list(range(1, 101))  # the first page
    app.number_input(key="co_page").set_value(3).run()
    assert_clean(app)
    runs = app.dataframe[2].value
    assert list(runs["line_no"]) == list(range(201, 251)) and not runs["has_maps"].any()
    assert decoded == []  # listing and summary come from plain tables and the stored JSON


def test_drilldown_recomputes_the_maps_of_a_summary_only_run(db_path: Path, minilm, load_calls) -> None:
    store = Store(db_path)
    result = run_batch([CorpusLine(1, "A dog ran."), CorpusLine(2, "The cat sat.")], minilm, None, store, "pets",
                       progress=False, viewer=LOCAL)
    old_id = store.corpus_runs(result.corpus_id, viewer=LOCAL)[0]["run_id"]
    app = open_page(DRILLDOWN, run=str(old_id), layer="1", head="3")
    assert_clean(app)
    assert "stored summaries only" in page_text(app)
    app.button(key="dd_recompute").click().run()
    assert_clean(app)
    new_id = store.corpus_runs(result.corpus_id, viewer=LOCAL)[0]["run_id"]
    assert new_id != old_id and app.text_input(key="run").value == str(new_id)
    assert f"Maps recomputed from run {old_id}, which stored summaries only" in page_text(app)  # not "a re-run"
    assert "Layer 1, head 3: attention map" in page_text(app) and "This run stored summaries only" not in page_text(app)
    original, _ = store.head_map(new_id, 1, 3, viewer=LOCAL)
    np.testing.assert_allclose(original, sinkfix.analyze("A dog ran.", minilm).maps[1, 3], atol=1e-3)
