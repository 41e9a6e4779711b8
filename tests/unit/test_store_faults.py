"""The store under a full disk and on a read-only file: a clear error, no corruption, no partial run."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from sinkfix.errors import StoreError, StoreFullError, StoreReadOnlyError
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store, database
from tests.synthetic import assert_same_run, synthetic_analysis

TABLES = ("runs", "run_tokens", "run_heads", "run_blobs")


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES}


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_full_disk_is_store_full_error_and_writes_work_again_with_room(db_path: Path) -> None:
    store = Store(db_path)
    first = store.save(synthetic_analysis(n_layers=4, n_heads=4, n_tokens=40, seed=1), viewer=LOCAL)
    before = counts(db_path)
    conn = store._db().conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 1}")  # SQLite's own "disk full": one more page allowed
    big = synthetic_analysis(n_layers=4, n_heads=4, n_tokens=40, seed=2)
    with pytest.raises(StoreFullError, match="the disk is full, so nothing was saved"):
        store.save(big, viewer=LOCAL)
    assert counts(db_path) == before and integrity(db_path) == "ok"  # rolled back whole
    assert not conn.in_transaction
    assert_same_run(synthetic_analysis(n_layers=4, n_heads=4, n_tokens=40, seed=1), store.get(first, viewer=LOCAL))
    conn.execute("PRAGMA max_page_count = 1073741823")  # room again
    assert_same_run(big, store.get(store.save(big, viewer=LOCAL), viewer=LOCAL))
    assert integrity(db_path) == "ok"


def _as_root_the_mode_bits_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    """root may write any file, so os.access says yes; make the check read the mode bits instead."""
    if database.os.geteuid() == 0:
        monkeypatch.setattr(database, "_read_only_file",
                            lambda path: path.exists() and not path.stat().st_mode & 0o222)


def test_read_only_file_serves_reads_and_refuses_writes(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = synthetic_analysis(n_tokens=7, seed=4, text="kept")
    run_id = Store(db_path).save(original, viewer=LOCAL)
    db_path.chmod(0o444)
    _as_root_the_mode_bits_decide(monkeypatch)
    digest = hashlib.sha256(db_path.read_bytes()).hexdigest()
    store = Store(db_path)
    assert store.read_only
    assert_same_run(original, store.get(run_id, viewer=LOCAL))
    assert store.count(viewer=LOCAL) == 1 and [r["id"] for r in store.list(viewer=LOCAL)] == [run_id]
    with pytest.raises(StoreReadOnlyError, match="read-only here"):
        store.save(synthetic_analysis(seed=5), viewer=LOCAL)
    with pytest.raises(StoreReadOnlyError):
        store.delete(run_id, viewer=LOCAL)
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == digest and integrity(db_path) == "ok"


def test_read_only_is_enforced_by_sqlite_not_only_by_the_check(db_path: Path) -> None:
    """Even when the caller asks for read-only on a writable file, SQLite refuses the write (mode=ro)."""
    Store(db_path).save(synthetic_analysis(seed=6), viewer=LOCAL)
    store = Store(db_path, read_only=True)
    with pytest.raises(StoreReadOnlyError):
        store.save(synthetic_analysis(seed=7), viewer=LOCAL)
    assert counts(db_path)["runs"] == 1


def test_read_only_missing_file_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()


def test_read_only_file_that_needs_a_migration_is_refused_untouched(tmp_path: Path) -> None:
    from tests.store_v1 import build_v1_database

    path = tmp_path / "v1.db"
    build_v1_database(path, [synthetic_analysis(seed=8)])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="read-only and needs a schema upgrade"):
        Store(path, read_only=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
