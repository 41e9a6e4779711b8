"""The Ray Data engine against the local one, on a real single-node Ray (num_cpus=2, shut down after
the module): the same stored runs and corpus summary, resume across engines, and calibrate. The node
starts beside a stale ``ray_current_cluster`` file and a dead ``RAY_ADDRESS``, which a bare
``ray.init()`` would try to join: a local run must start its own cluster whatever they say."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import sinkfix
from sinkfix.analysis.corpus import summarize
from sinkfix.engines.common import CorpusLine
from sinkfix.engines.local import run_batch
from sinkfix.engines.ray_engine import RayOptions, connect, run_batch_ray
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from ..shared_data import data_path, needs_data
from .test_batch import stats_of
from .test_corpus_storage import assert_same_summary

TEXTS = ["The cat sat on the mat.", "A dog ran.", "Birds fly south in winter.", "The cat sat on the mat, again.",
         "Short.", "A much longer sentence that goes on about nothing in particular at all, for a while.",
         "A dog ran.", "Rain."]  # line 7 repeats line 2: one stored run, two corpus lines
LINES = [CorpusLine(n, text) for n, text in enumerate(TEXTS, start=1)]


pytestmark = pytest.mark.xdist_group("ray")  # one Ray node at a time on the machine (pytest-xdist)

DEAD = "127.0.0.1:1"  # nothing listens on port 1


@pytest.fixture(scope="module")
def ray_node():
    """One real single-node Ray for the module (2 CPUs), shut down after it, started where a killed
    ``ray start --head`` left its address behind and ``RAY_ADDRESS`` names a dead head."""
    import ray

    # A short path of our own under /tmp: Ray's socket paths inside it must stay under 108 bytes.
    temp = Path(tempfile.mkdtemp(prefix="sf-ray-", dir="/tmp"))
    (temp / "ray").mkdir()
    (temp / "ray" / "ray_current_cluster").write_text(DEAD)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", str(temp))
        patch.setenv("RAY_ADDRESS", DEAD)
        try:
            assert connect(RayOptions(workers=2))
            yield
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def test_a_local_node_ignores_a_stale_cluster_file_and_ray_address(ray_node) -> None:
    """Without --address the engine started a new node here (in the planted temp dir), not the dead head."""
    import ray

    from ray._private.utils import read_ray_address

    assert read_ray_address() == DEAD  # the stale file is still there (Ray reads RAY_TMPDIR)
    gcs = ray.get_runtime_context().gcs_address
    assert gcs != DEAD and not gcs.endswith(":1")
    assert ray.cluster_resources()["CPU"] == 2
    assert ray.get(ray.remote(lambda: 6 * 7).remote()) == 42


def test_ray_resumes_and_gives_the_local_summary_storing_each_input_once(ray_node, minilm, tmp_path: Path) -> None:
    """One Ray pass (actors start once): it resumes a corpus the local engine half stored, and its
    corpus equals a local run of the whole file."""
    ray_store, local_store = Store(tmp_path / "ray.db"), Store(tmp_path / "local.db")
    first = run_batch(LINES[:4], minilm, None, ray_store, "c", batch_size=2, progress=False, viewer=LOCAL)
    assert (first.analysed, first.cached) == (4, 0)
    remote = run_batch_ray(LINES, "minilm", None, ray_store, "c", RayOptions(workers=2, batch_size=2), progress=False, viewer=LOCAL)
    assert (remote.analysed, remote.cached) == (3, 5)  # lines 1-4 were stored; line 7 repeats line 2
    local = run_batch(LINES, minilm, None, local_store, "c", batch_size=3, progress=False, viewer=LOCAL)
    assert (local.analysed, local.cached) == (7, 1)
    assert_same_summary(local.summary, remote.summary)
    again = run_batch(LINES, minilm, None, ray_store, "c", progress=False, viewer=LOCAL)
    assert (again.analysed, again.cached) == (0, 8)  # the local engine finds what Ray stored
    # Every distinct input is stored once; the repeated line links to the same run.
    for store in (local_store, ray_store):
        rows = store.corpus_runs(store.corpus("c", viewer=LOCAL)["id"], viewer=LOCAL)
        assert [r["line_no"] for r in rows] == list(range(1, 9)) and [r["text"] for r in rows] == TEXTS
        assert store.count(viewer=LOCAL) == len(set(TEXTS)) == len({r["run_id"] for r in rows})
        assert rows[1]["run_id"] == rows[6]["run_id"]
        assert not any(r["has_maps"] for r in rows)  # summaries only, by default
    # Each run's numbers equal analyze() on that text alone (an independent, unbatched forward), and
    # the summary is the one computed straight from those analyses' arrays.
    alone = {text: sinkfix.analyze(text, minilm) for text in set(TEXTS)}
    for row in ray_store.corpus_runs(ray_store.corpus("c", viewer=LOCAL)["id"], viewer=LOCAL):
        stored = ray_store.get(row["run_id"], viewer=LOCAL)
        np.testing.assert_allclose(stored.alpha, alone[row["text"]].alpha, atol=1e-5)
        np.testing.assert_allclose(stored.value_norm, alone[row["text"]].value_norm, atol=1e-5)
        assert stored.labels == alone[row["text"]].labels and stored.maps is None
    assert_same_summary(remote.summary, summarize([stats_of(alone[t]) for t in TEXTS], epsilon=0.3))


STS = data_path("stsbenchmark")


@pytest.mark.slow
@needs_data("stsbenchmark/sts-dev.csv")
@needs_data("stsbenchmark/sts-test.csv")
def test_calibrate_on_ray_selects_the_local_heads(ray_node, minilm) -> None:
    """One head per Ray task; the trials, and so the kept heads, are those of the local search."""
    from sinkfix.engines.ray_calibrate import ray_scorer
    from sinkfix.experiments.calibrate import calibrate_sts
    from sinkfix.experiments.intervene import Intervention
    from sinkfix.experiments.sts import load_sts

    dev = load_sts(STS, "dev", limit=16)
    heldout = load_sts(STS, "test", limit=8)
    intervention = Intervention(target="first", beta=0.2, layers=(1, 2))
    local = calibrate_sts(minilm, dev, heldout, intervention, max_heads=6)
    remote = calibrate_sts(minilm, dev, heldout, intervention, max_heads=6,
                           scorer=ray_scorer("minilm", "sts", dev, intervention, RayOptions(workers=2)))
    assert [(t.layer, t.head) for t in remote.trials] == [(t.layer, t.head) for t in local.trials]
    np.testing.assert_allclose([t.gain for t in remote.trials], [t.gain for t in local.trials], atol=1e-6)
    assert remote.kept_heads == local.kept_heads
    assert any(t.gain != 0 for t in local.trials)  # the search had something to decide
