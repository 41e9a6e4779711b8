"""The cache and the ``runs`` CLI on the embedded models: real analyses stored, served and exported."""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import sinkfix
from sinkfix.cli import main
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
from tests.conftest import SEED_TEXT
from tests.synthetic import assert_same_run
from tests.unit.test_store import PICKLE_MARKERS

REPO = Path(__file__).resolve().parents[2]
TEXT = "The cat sat on the mat."
# corrected_att_scores of a stored run are ACT applied to the float16 maps: maps in [0, 1] lose at
# most half a float16 ulp (2.4e-4 near 1), which ACT's row rescaling can at most amplify slightly.
CORRECTED_ATOL = 1e-3


@contextmanager
def counting_forwards(loaded: sinkfix.LoadedModel) -> Iterator[list[int]]:
    """Counts forward passes of the model's transformer body."""
    calls = [0]
    handle = loaded.base.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        handle.remove()


def test_cache_hit_serves_the_stored_run_without_a_forward(minilm: sinkfix.LoadedModel, db_path: Path) -> None:
    store = Store(db_path)
    settings = sinkfix.AnalysisSettings(tau_att=0.1)
    with counting_forwards(minilm) as calls:
        first = sinkfix.analyze_cached(TEXT, minilm, settings, store)
        assert calls[0] == 1 and first.run_id == 1
        again = sinkfix.analyze_cached(TEXT, minilm, settings, store)
        # The same request, spelled differently: the model by name, the layer given explicitly
        # (L // 2 = 3 is the default), no settings at all (tau_att 0.1 is the default).
        by_name = sinkfix.analyze_cached(TEXT, "minilm", sinkfix.AnalysisSettings(layer=3), store)
        defaults = sinkfix.analyze_cached(TEXT, minilm, None, store)
        assert calls[0] == 1, "a cache hit ran the model"
    for hit in (again, by_name, defaults):
        assert hit.run_id == first.run_id
        assert_same_run(first, hit)
    assert store.count(viewer=LOCAL) == 1


def test_a_changed_setting_text_or_model_is_a_new_run(minilm: sinkfix.LoadedModel, smollm2: sinkfix.LoadedModel,
                                                     db_path: Path) -> None:
    store = Store(db_path)
    base = sinkfix.analyze_cached(TEXT, minilm, None, store)
    retrained = copy.copy(minilm)
    retrained.fingerprint = "0123456789abcdef"  # same name, different weights
    with counting_forwards(minilm) as calls:
        variants = [
            sinkfix.analyze_cached(TEXT, minilm, sinkfix.AnalysisSettings(beta=0.5), store),
            sinkfix.analyze_cached(TEXT, minilm, sinkfix.AnalysisSettings(layer=1), store),
            sinkfix.analyze_cached(TEXT + " ", minilm, None, store),
            sinkfix.analyze_cached(TEXT, retrained, None, store),
        ]
        assert calls[0] == len(variants)
    variants.append(sinkfix.analyze_cached(TEXT, smollm2, None, store))
    ids = [base.run_id] + [v.run_id for v in variants]
    assert len(set(ids)) == len(ids) == store.count(viewer=LOCAL)
    assert store.models(viewer=LOCAL) == ["minilm", "smollm2-135m"]


def test_real_runs_round_trip_and_hold_no_pickle(minilm: sinkfix.LoadedModel, smollm2: sinkfix.LoadedModel,
                                                db_path: Path) -> None:
    store = Store(db_path)
    for loaded in (minilm, smollm2):
        original = sinkfix.analyze(SEED_TEXT, loaded)
        restored = store.get(store.save(original, viewer=LOCAL), viewer=LOCAL)
        assert_same_run(original, restored)
        assert np.abs(restored.corrected_maps - original.corrected_maps).max() <= CORRECTED_ATOL
        layer, head = loaded.n_layers - 1, loaded.n_heads - 1
        maps, corrected = store.head_map(restored.run_id, layer, head, viewer=LOCAL)
        assert maps.tobytes() == restored.maps[layer, head].tobytes()
        assert corrected.tobytes() == restored.corrected_maps[layer, head].tobytes()
    store.close()
    data = db_path.read_bytes() + (db_path.with_name(db_path.name + "-wal").read_bytes()
                                   if db_path.with_name(db_path.name + "-wal").exists() else b"")
    for marker in PICKLE_MARKERS:
        assert marker not in data, marker


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _usage_error(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(stopped.value.code), out, err


def test_analyze_saves_and_repeats_from_the_cache(minilm: sinkfix.LoadedModel, db_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    code, out, err = _cli(capsys, "analyze", TEXT, "--model", "minilm", "--json", "-")
    assert code == 0 and "saved as run #1" in err
    first = json.loads(out)
    assert first["run_id"] == 1
    with counting_forwards(minilm) as calls:
        code, out, err = _cli(capsys, "analyze", TEXT, "--model", "minilm", "--json", "-")
        assert calls[0] == 0
    assert code == 0 and "run #1" in err and "without a forward pass" in err
    assert json.loads(out)["run_id"] == 1
    code, out, err = _cli(capsys, "analyze", TEXT, "--model", "minilm", "--no-save", "--json", "-")
    assert code == 0 and "run_id" not in json.loads(out)
    assert Store(db_path).count(viewer=LOCAL) == 1


def test_export_equals_the_json_that_created_the_run(minilm: sinkfix.LoadedModel, db_path: Path,
                                                     capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    _, out, _ = _cli(capsys, "analyze", SEED_TEXT, "--model", "minilm", "--json", "-")
    created = json.loads(out)
    code, out, err = _cli(capsys, "runs", "export", str(created["run_id"]), "--json", "-")
    assert code == 0 and err == ""
    exported = json.loads(out)
    assert set(exported) == set(created)
    for key in ("token_list", "classifications", "att_received_scores", "value_norms", "run_id"):
        assert exported[key] == created[key], key  # float32 fields: exact
    got, want = np.array(exported["corrected_att_scores"]), np.array(created["corrected_att_scores"])
    assert got.shape == want.shape == (6, 12, len(created["token_list"]), len(created["token_list"]))
    assert np.abs(got - want).max() <= CORRECTED_ATOL

    path = tmp_path / "tokens.csv"
    assert _cli(capsys, "runs", "export", "1", "--csv", str(path))[0] == 0
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [r["token"] for r in rows] == created["token_list"]
    assert [r["label"] for r in rows] == created["classifications"]
    assert [float(r["att_received"]) for r in rows] == created["att_received_scores"]
    assert [float(r["value_norm"]) for r in rows] == created["value_norms"]


def test_runs_list_show_delete(minilm: sinkfix.LoadedModel, db_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = Store(db_path)
    for text in ("alpha sentence one.", "beta sentence two.", "alpha again."):
        sinkfix.analyze_cached(text, minilm, None, store)

    code, out, _ = _cli(capsys, "runs", "list", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [3, 2, 1]
    _, out, _ = _cli(capsys, "runs", "list", "--json", "--search", "alpha", "--model", "minilm")
    assert [r["text"] for r in json.loads(out)] == ["alpha again.", "alpha sentence one."]
    _, out, _ = _cli(capsys, "runs", "list", "--json", "--model", "gpt2")
    assert json.loads(out) == []
    code, out, err = _cli(capsys, "runs", "list")
    assert code == 0 and "beta sentence two." in out and "3 of 3 runs" in err

    code, out, _ = _cli(capsys, "runs", "show", "2")
    assert code == 0 and "run #2" in out and "beta sentence two." in out and "strongest sink heads" in out

    code, _, err = _cli(capsys, "runs", "delete", "2")
    assert code == 0 and "deleted run #2" in err
    assert [r["id"] for r in store.list(viewer=LOCAL)] == [3, 1]
    for argv in (("runs", "show", "2"), ("runs", "delete", "2"), ("runs", "export", "2", "--json", "-")):
        code, out, err = _cli(capsys, *argv)
        assert code == 2 and out == ""
        assert err.strip().splitlines() == [f"sinkfix: error: no run with id 2 in {db_path}"]
    for argv in (("runs", "export", "1"), ("runs", "export", "1", "--json", "-", "--csv", "-"),
                 ("runs", "list", "--label", "harmful")):
        code, out, err = _cli(capsys, *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, argv
    code, out, err = _usage_error(capsys, "runs", "show", "one")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_a_bad_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("not a database")
    env = {**os.environ, "SINKFIX_DB": str(bad)}
    done = subprocess.run([sys.executable, "-m", "sinkfix", "runs", "list"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"sinkfix: error: {bad} is not a SQLite database; SinkFix left it untouched"]
    assert bad.read_text() == "not a database"
