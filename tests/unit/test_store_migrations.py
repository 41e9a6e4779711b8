"""Schema migrations: a database written by the first schema version opens, migrates and reads back."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sinkfix.policy.ownership import LOCAL
from sinkfix.store import schema as store_module
from sinkfix.store import Store
from tests.store_v1 import build_v1_database
from tests.synthetic import assert_same_run, synthetic_analysis


@pytest.fixture()
def v1_runs() -> list:
    return [
        synthetic_analysis(n_layers=2, n_heads=3, n_tokens=7, seed=1, created_at="2025-01-01T10:00:00+00:00"),
        synthetic_analysis(n_layers=2, n_heads=3, n_tokens=5, seed=2, causal=True, keep_maps=False,
                           model_name="other", created_at="2025-01-02T10:00:00+00:00"),
    ]


@pytest.fixture()
def v1_database(tmp_path: Path, v1_runs: list) -> Path:
    path = tmp_path / "v1.db"
    build_v1_database(path, v1_runs)
    return path


def _schema(path: Path) -> dict[str, list]:
    """Every table's columns (name, type, not-null, default, pk) and every index's columns."""
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        shape = {name: conn.execute(f"PRAGMA table_info({name})").fetchall() for name in names}
        for (index,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"):
            shape[f"index {index}"] = conn.execute(f"PRAGMA index_info({index})").fetchall()
    return shape


def test_v1_database_opens_and_reads_back(v1_database: Path, v1_runs: list) -> None:
    store = Store(v1_database)
    assert store.schema_version() == len(store_module.STEPS)
    for run_id, original in enumerate(v1_runs, start=1):
        assert_same_run(original, store.get(run_id, viewer=LOCAL))
    # m002 backfilled the label counts from the v1 token rows.
    listed = {row["id"]: row for row in store.list(viewer=LOCAL)}
    for run_id, original in enumerate(v1_runs, start=1):
        counts = original.label_counts()
        assert (listed[run_id]["n_beneficial"], listed[run_id]["n_detrimental"], listed[run_id]["n_neutral"]) == (
            counts["beneficial"], counts["detrimental"], counts["neutral"])
    assert store.count(label="detrimental", viewer=LOCAL) == sum(1 for a in v1_runs if a.label_counts()["detrimental"])
    new_id = store.save(synthetic_analysis(seed=3), viewer=LOCAL)
    assert new_id == 3 and store.count(viewer=LOCAL) == 3


def test_migrated_v1_schema_equals_a_fresh_schema(v1_database: Path, tmp_path: Path) -> None:
    Store(v1_database).close()
    fresh = tmp_path / "fresh.db"
    Store(fresh).close()
    assert _schema(v1_database) == _schema(fresh)


def test_a_failing_step_rolls_back_and_leaves_v1(v1_database: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def m003_broken(db) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("step failed")

    monkeypatch.setattr(store_module, "STEPS", [*store_module.STEPS, m003_broken])
    with pytest.raises(RuntimeError, match="step failed"):
        Store(v1_database)
    with sqlite3.connect(v1_database) as conn:
        applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert applied == ["m001_runs"]  # the pending steps run in one transaction: all or nothing
    assert "half_done" not in tables and "n_detrimental" not in columns
    monkeypatch.undo()
    assert Store(v1_database).schema_version() == len(store_module.STEPS)
