"""Corpus storage: summary-only runs and their keys, --keep maps, recomputed maps, the Parquet round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import sinkfix
from sinkfix.analysis.corpus import CorpusSummary
from sinkfix.cache import analyze_or_fetch, cache_key
from sinkfix.cli import main
from sinkfix.engines.common import SUMMARY_SUFFIX, CorpusLine
from sinkfix.engines.local import batch_order, run_batch
from sinkfix.engines.maps import needs_maps, recompute_maps
from sinkfix.engines.parquet import import_corpus
from sinkfix.engines.rows import from_row, summary_only, to_row
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
from tests.synthetic import synthetic_analysis

TEXTS = ["The cat sat on the mat.", "A dog ran.", "Birds fly south in winter."]
LINES = [CorpusLine(n, t) for n, t in zip((1, 2, 4), TEXTS)]


def assert_same_summary(a: CorpusSummary, b: CorpusSummary) -> None:
    """Two corpus summaries agree: counts exactly, means within 1e-5."""
    assert a.n_inputs == b.n_inputs and a.n_detrimental_inputs == b.n_detrimental_inputs
    np.testing.assert_allclose(a.head_sink_rate, b.head_sink_rate, atol=1e-5)
    np.testing.assert_allclose(a.head_mean_top_alpha, b.head_mean_top_alpha, atol=1e-5)
    assert [(t.token, t.occurrences, t.sinks, t.inputs, t.detrimental) for t in a.token_types] == \
           [(t.token, t.occurrences, t.sinks, t.inputs, t.detrimental) for t in b.token_types]
    for name in ("mean_sink_rate", "mean_value_norm"):
        np.testing.assert_allclose([getattr(t, name) for t in a.token_types],
                                   [getattr(t, name) for t in b.token_types], atol=1e-5)


def test_rows_round_trip_is_bit_exact() -> None:
    analysis = synthetic_analysis(n_layers=3, n_heads=4, n_tokens=7, seed=3, text="seven tokens here")
    back = from_row(json.loads(json.dumps(to_row(analysis))))  # through plain JSON types, as Arrow holds them
    expected = summary_only(analysis)
    for name in ("att_received", "att_received_head", "alpha", "sink_rate", "entropy", "value_norm",
                 "value_norm_layer", "value_norm_head", "contribution"):
        np.testing.assert_array_equal(getattr(back, name), getattr(expected, name))
    assert (back.tokens, back.labels, back.sink_indices, back.settings) == \
           (expected.tokens, expected.labels, expected.sink_indices, expected.settings)
    assert back.maps is None and back.corrected_maps is None and back.learned_sink_mass is None


def test_batch_order_sorts_windows_by_length_and_keeps_every_line() -> None:
    lines = [CorpusLine(i, "x" * ((7 * i) % 11 + 1)) for i in range(1, 40)]
    batches = batch_order(lines, 4)
    assert sorted(line.line_no for b in batches for line in b) == list(range(1, 40))
    assert all(len(b) <= 4 for b in batches)
    window = [line for b in batches[:8] for line in b]  # the first window: 32 lines, sorted by length
    assert [len(l.text) for l in window] == sorted(len(l.text) for l in lines[:32])
    assert [b[0].line_no for b in batch_order(lines, 1)] == list(range(1, 40))  # batch size 1: file order


def test_summary_only_runs_do_not_serve_a_request_for_maps(db_path: Path, minilm) -> None:
    store = Store(db_path)
    result = run_batch(LINES, minilm, None, store, "pets", progress=False, viewer=LOCAL)
    rows = store.corpus_runs(result.corpus_id, viewer=LOCAL)
    assert [r["has_maps"] for r in rows] == [0, 0, 0]
    stored = store.get(rows[0]["run_id"], viewer=LOCAL)
    assert stored.maps is None and stored.corrected_maps is None and needs_maps(stored)
    assert store.find(cache_key(TEXTS[0], minilm) + SUMMARY_SUFFIX, viewer=LOCAL) == rows[0]["run_id"]
    # An interactive request for the same text wants maps: it is analysed afresh, not served the summary run.
    fresh, hit = analyze_or_fetch(TEXTS[0], minilm, None, store, viewer=LOCAL)
    assert not hit and fresh.maps is not None and fresh.run_id != rows[0]["run_id"]
    # --keep maps: the runs keep their maps (the one with maps already stored is reused).
    kept = run_batch(LINES, minilm, None, store, "pets-maps", keep="maps", progress=False, viewer=LOCAL)
    assert (kept.analysed, kept.cached) == (2, 1)
    assert all(r["has_maps"] for r in store.corpus_runs(kept.corpus_id, viewer=LOCAL))
    # A summary corpus rerun is served by runs with maps as well as by summary-only ones.
    again = run_batch(LINES, minilm, None, store, "pets", progress=False, viewer=LOCAL)
    assert (again.analysed, again.cached) == (0, 3)


def test_recompute_maps_stores_a_linked_run_and_moves_the_corpus_line(db_path: Path, minilm) -> None:
    store = Store(db_path)
    result = run_batch(LINES, minilm, None, store, "pets", progress=False, viewer=LOCAL)
    old_id = store.corpus_runs(result.corpus_id, viewer=LOCAL)[1]["run_id"]
    fresh = recompute_maps(store, old_id, minilm, viewer=LOCAL)
    alone = sinkfix.analyze(TEXTS[1], minilm)
    assert fresh.run_id != old_id and fresh.parent_run_id == old_id
    np.testing.assert_allclose(fresh.maps, alone.maps, atol=1e-3)  # stored as float16
    assert store.corpus_runs(result.corpus_id, viewer=LOCAL)[1]["run_id"] == fresh.run_id
    assert store.get(old_id, viewer=LOCAL).maps is None  # the summary-only run stays in the history
    # The corpus summary is unchanged, and an interactive request is now served the run with maps.
    again = run_batch(LINES, minilm, None, store, "pets", progress=False, viewer=LOCAL)
    assert_same_summary(again.summary, result.summary)  # batched vs one text alone: equal within 1e-5
    assert analyze_or_fetch(TEXTS[1], minilm, None, store, viewer=LOCAL) [0].run_id == fresh.run_id
    assert recompute_maps(store, fresh.run_id, minilm, viewer=LOCAL).run_id == fresh.run_id  # nothing to do twice


def test_parquet_round_trip(tmp_path: Path, db_path: Path, minilm, monkeypatch, capsys) -> None:
    corpus = tmp_path / "pets.txt"
    corpus.write_text(f"{TEXTS[0]}\n{TEXTS[1]}\n\n{TEXTS[2]}\n{TEXTS[1]}\n")
    out = tmp_path / "parquet"
    assert main(["batch", str(corpus), "--model", "minilm", "--quiet", "--parquet", str(out)]) == 0
    store = Store(db_path)
    original = store.corpus("pets", viewer=LOCAL)
    texts = pq.read_table(out / "texts-00000.parquet").to_pylist()
    heads = pq.read_table(out / "heads-00000.parquet").to_pandas()
    assert sorted(r["line_no"] for r in texts) == [1, 2, 4, 5]
    assert len(heads) == 4 * 6 * 12
    # The per-head table is each run's head table.
    run = store.get(next(r["run_id"] for r in texts if r["line_no"] == 4), viewer=LOCAL)
    mine = heads[heads["line_no"] == 4].sort_values(["layer", "head"])
    np.testing.assert_allclose(mine["top_alpha"], [h["top_alpha"] for h in run.head_table()], rtol=1e-6)

    other = tmp_path / "other.db"
    monkeypatch.setenv("SINKFIX_DB", str(other))
    assert main(["corpora", "import", str(out), "--corpus", "imported"]) == 0
    assert "4 lines: 3 imported, 1 served from the store" in capsys.readouterr().err
    target = Store(other)
    imported = target.corpus("imported", viewer=LOCAL)
    assert json.loads(imported["summary"]) == json.loads(original["summary"])
    assert imported["settings"] == original["settings"] and imported["model"] == "minilm"
    by_line = {r["line_no"]: r for r in target.corpus_runs(imported["id"], viewer=LOCAL)}
    for row in store.corpus_runs(original["id"], viewer=LOCAL):
        back, first = target.get(by_line[row["line_no"]]["run_id"], viewer=LOCAL), store.get(row["run_id"], viewer=LOCAL)
        np.testing.assert_array_equal(back.alpha, first.alpha)
        assert back.tokens == first.tokens and back.labels == first.labels
    # Importing again stores nothing new.
    assert import_corpus(out, target, "imported", viewer=LOCAL).cached == 4 and target.count(viewer=LOCAL) == 3


def test_ray_engine_option_errors_are_one_line_before_ray_starts(tmp_path: Path, db_path: Path, capsys) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("A dog ran.\n")
    assert main(["batch", str(corpus), "--engine", "ray", "--keep", "maps"]) == 2
    assert capsys.readouterr().err.startswith("sinkfix: error: --engine ray stores summaries only")
    assert main(["batch", str(corpus), "--engine", "ray", "--workers", "0"]) == 2
    assert "--workers must be a whole number >= 1" in capsys.readouterr().err
    assert main(["batch", str(corpus), "--batch-size", "0", "--quiet"]) == 2
    assert "--batch-size must be a whole number >= 1" in capsys.readouterr().err
