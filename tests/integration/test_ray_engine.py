"""The Ray Data engine against the local one, on a real single-node Ray (num_cpus=2), and the
corpus features around it: resume, summary-only storage, recomputed maps, Parquet round trip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import sinkfix
from sinkfix.analysis.corpus import CorpusSummary, summarize
from sinkfix.cache import analyze_or_fetch
from sinkfix.engines.common import SUMMARY_SUFFIX, CorpusLine
from sinkfix.engines.local import run_batch
from sinkfix.engines.maps import needs_maps, recompute_maps
from sinkfix.engines.parquet import import_corpus
from sinkfix.engines.ray_engine import RayOptions, connect, run_batch_ray
from sinkfix.store import Store

from .test_batch import stats_of

TEXTS = ["The cat sat on the mat.", "A dog ran.", "Birds fly south in winter.", "The cat sat on the mat, again.",
         "Short.", "A much longer sentence that goes on about nothing in particular at all, for a while.",
         "A dog ran.", "Rain."]  # line 7 repeats line 2: one stored run, two corpus lines
LINES = [CorpusLine(n, text) for n, text in enumerate(TEXTS, start=1)]


@pytest.fixture(scope="module")
def ray_node():
    """One real single-node Ray for the module (2 CPUs), shut down after it."""
    import ray

    assert connect(RayOptions(workers=2))
    yield
    ray.shutdown()


def assert_same_summary(a: CorpusSummary, b: CorpusSummary) -> None:
    assert a.n_inputs == b.n_inputs and a.n_detrimental_inputs == b.n_detrimental_inputs
    np.testing.assert_allclose(a.head_sink_rate, b.head_sink_rate, atol=1e-5)
    np.testing.assert_allclose(a.head_mean_top_alpha, b.head_mean_top_alpha, atol=1e-5)
    assert [(t.token, t.occurrences, t.sinks, t.inputs, t.detrimental) for t in a.token_types] == \
           [(t.token, t.occurrences, t.sinks, t.inputs, t.detrimental) for t in b.token_types]
    np.testing.assert_allclose([t.mean_sink_rate for t in a.token_types], [t.mean_sink_rate for t in b.token_types],
                               atol=1e-5)
    np.testing.assert_allclose([t.mean_value_norm for t in a.token_types],
                               [t.mean_value_norm for t in b.token_types], atol=1e-5)


def test_ray_gives_the_local_summary_and_stores_each_input_once(ray_node, minilm, tmp_path: Path) -> None:
    local_store, ray_store = Store(tmp_path / "local.db"), Store(tmp_path / "ray.db")
    local = run_batch(LINES, minilm, None, local_store, "c", batch_size=3, progress=False)
    remote = run_batch_ray(LINES, "minilm", None, ray_store, "c", RayOptions(workers=2, batch_size=2), progress=False)
    assert_same_summary(local.summary, remote.summary)
    # Every distinct input is stored once; the repeated line links to the same run.
    for store in (local_store, ray_store):
        rows = store.corpus_runs(store.corpus("c")["id"])
        assert [r["line_no"] for r in rows] == list(range(1, 9)) and [r["text"] for r in rows] == TEXTS
        assert store.count() == len(set(TEXTS)) == len({r["run_id"] for r in rows})
        assert rows[1]["run_id"] == rows[6]["run_id"]
        assert not any(r["has_maps"] for r in rows)  # summaries only, by default
    # Each run's numbers equal analyze() on that text alone (an independent, unbatched forward).
    for row in ray_store.corpus_runs(ray_store.corpus("c")["id"]):
        stored, alone = ray_store.get(row["run_id"]), sinkfix.analyze(row["text"], minilm)
        np.testing.assert_allclose(stored.alpha, alone.alpha, atol=1e-5)
        np.testing.assert_allclose(stored.value_norm, alone.value_norm, atol=1e-5)
        assert stored.labels == alone.labels and stored.tokens == alone.tokens and stored.maps is None
    # The summary is the one computed straight from the analyses' arrays.
    expected = summarize([stats_of(sinkfix.analyze(t, minilm)) for t in TEXTS], epsilon=0.3)
    assert_same_summary(remote.summary, expected)


def test_ray_resumes_what_the_local_engine_stored(ray_node, minilm, db_path: Path) -> None:
    store = Store(db_path)
    first = run_batch(LINES[:4], minilm, None, store, "c", batch_size=2, progress=False)
    assert (first.analysed, first.cached) == (4, 0)
    resumed = run_batch_ray(LINES, "minilm", None, store, "c", RayOptions(workers=2, batch_size=2), progress=False)
    assert (resumed.analysed, resumed.cached) == (3, 5)  # lines 1-4 and the repeat of line 2 were stored
    again = run_batch(LINES, minilm, None, store, "c", progress=False)
    assert (again.analysed, again.cached) == (0, 8)
    assert store.count() == len(set(TEXTS))
