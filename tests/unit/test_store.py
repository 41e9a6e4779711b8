"""The run store on synthetic analyses: round trips, queries, crash safety, refusals, no pickle."""
from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sinkfix.policy.ownership import LOCAL
from sinkfix.store import database, run_rows as store_runs, schema
from sinkfix.store import tensorio
from sinkfix.errors import RunNotFoundError, StoreError
from sinkfix.store import Store
from tests.synthetic import assert_same_run, synthetic_analysis

REPO = Path(__file__).resolve().parents[2]
TABLES = ("runs", "run_tokens", "run_heads", "run_blobs")
PICKLE_MARKERS = (
    b"\x80\x04\x95", b"\x80\x05\x95",  # protocol 4/5 header + FRAME opcode
    b"numpy.core.multiarray", b"numpy._core", b"_reconstruct", b"torch._utils", b"copyreg", b"copy_reg",
)


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize("causal", [False, True])
def test_round_trip_is_bit_exact(db_path: Path, causal: bool) -> None:
    original = synthetic_analysis(n_layers=3, n_heads=4, n_tokens=9, causal=causal, seed=3)
    store = Store(db_path)
    run_id = store.save(original, viewer=LOCAL)
    restored = store.get(run_id, viewer=LOCAL)
    assert restored.run_id == run_id
    assert_same_run(original, restored)
    # The corrected maps are recomputed, not stored: they stay within float16 rounding of the original.
    assert np.abs(restored.corrected_maps - original.corrected_maps).max() <= 1e-3
    assert restored.token_table() == store.token_rows(run_id, viewer=LOCAL) == original.token_table()
    assert store.head_rows(run_id, viewer=LOCAL) == original.head_table()


def test_head_map_decodes_one_layer_and_matches_get(db_path: Path) -> None:
    store = Store(db_path)
    run_id = store.save(synthetic_analysis(n_layers=3, n_heads=4, n_tokens=7, seed=5), viewer=LOCAL)
    full = store.get(run_id, viewer=LOCAL)
    for layer, head in [(0, 0), (1, 3), (2, 2)]:
        original, corrected = store.head_map(run_id, layer, head, viewer=LOCAL)
        assert original.tobytes() == full.maps[layer, head].tobytes()
        assert corrected.tobytes() == full.corrected_maps[layer, head].tobytes()
    with pytest.raises(StoreError, match="layers 0..2"):
        store.head_map(run_id, 3, 0, viewer=LOCAL)


def test_run_without_maps_or_contribution(db_path: Path) -> None:
    original = dataclasses.replace(synthetic_analysis(keep_maps=False), contribution=None,
                                   warnings=["norm-based contribution unavailable"])
    store = Store(db_path)
    run_id = store.save(original, viewer=LOCAL)
    assert_same_run(original, store.get(run_id, viewer=LOCAL))
    assert store.head_map(run_id, 0, 0, viewer=LOCAL) is None
    assert all(row["top_contribution_share"] is None for row in store.head_rows(run_id, viewer=LOCAL))
    assert store.list(viewer=LOCAL)[0]["has_maps"] is False


def test_corrected_maps_that_are_not_act_are_stored(db_path: Path) -> None:
    """Only the exact ACT output is recomputed on load; anything else is kept (float16)."""
    base = synthetic_analysis(seed=2)
    odd = dataclasses.replace(base, corrected_maps=np.flip(base.maps, axis=-1).copy())
    store = Store(db_path)
    restored = store.get(store.save(odd, viewer=LOCAL), viewer=LOCAL)
    assert restored.corrected_maps.tobytes() == odd.corrected_maps.astype(np.float16).astype(np.float32).tobytes()
    assert store.head_map(restored.run_id, 1, 2, viewer=LOCAL)[1].tobytes() == restored.corrected_maps[1, 2].tobytes()


def test_list_filters_paging_and_counts(db_path: Path) -> None:
    store = Store(db_path)
    ids = []
    for i in range(12):
        analysis = synthetic_analysis(
            seed=i, model_name="alpha" if i % 3 else "beta", keep_maps=False,
            text=f"sentence {i} with 100% [SEP]_sinks" if i % 4 == 0 else f"plain sentence {i}",
            created_at=f"2025-01-{i + 1:02d}T12:00:00+00:00",
        )
        if i % 2:  # no detrimental token in odd runs
            analysis = dataclasses.replace(analysis, labels=["beneficial"] + ["neutral"] * (analysis.n_tokens - 1))
        ids.append(store.save(analysis, viewer=LOCAL))

    newest = store.list(viewer=LOCAL)
    assert [r["id"] for r in newest] == ids[::-1]
    assert set(newest[0]) == {"id", "created_at", "model", "text", "n_tokens", "n_beneficial",
                              "n_detrimental", "n_neutral", "has_maps", "owner", "shared"}
    assert [r["id"] for r in store.list(order="oldest", limit=3, offset=2, viewer=LOCAL)] == ids[2:5]
    assert [r["id"] for r in store.list(model="beta", viewer=LOCAL)] == [ids[9], ids[6], ids[3], ids[0]]
    assert store.count(model="beta", viewer=LOCAL) == 4 and store.count(viewer=LOCAL) == 12
    # LIKE wildcards in the search text are literal.
    assert [r["id"] for r in store.list(text_contains="100%", viewer=LOCAL)] == [ids[8], ids[4], ids[0]]
    assert store.count(text_contains="_sinks", viewer=LOCAL) == 3 and store.count(text_contains="x_s", viewer=LOCAL) == 0
    assert [r["id"] for r in store.list(label="detrimental", order="oldest", viewer=LOCAL)] == ids[0::2]
    assert all(r["n_detrimental"] == 1 for r in store.list(label="detrimental", viewer=LOCAL))
    assert store.count(since="2025-01-10", viewer=LOCAL) == 3
    assert store.count(since="2025-01-10T13:00:00+01:00", viewer=LOCAL) == 3  # 12:00 UTC, inclusive
    assert store.count(model="alpha", label="detrimental", since="2025-01-05", viewer=LOCAL) == 3
    assert store.models(viewer=LOCAL) == ["alpha", "beta"]
    for bad in ({"label": "harmful"}, {"since": "last tuesday"}):
        with pytest.raises(StoreError):
            store.list(**bad, viewer=LOCAL)
    with pytest.raises(StoreError, match="order"):
        store.list(order="random", viewer=LOCAL)


def test_find_delete_and_missing_ids(db_path: Path) -> None:
    store = Store(db_path)
    run_id = store.save(synthetic_analysis(), cache_key="key-1", viewer=LOCAL)
    other = store.save(synthetic_analysis(seed=1), viewer=LOCAL)
    assert store.find("key-1", viewer=LOCAL) == run_id and store.find("nope", viewer=LOCAL) is None
    store.delete(run_id, viewer=LOCAL)
    assert store.find("key-1", viewer=LOCAL) is None
    assert [r["id"] for r in store.list(viewer=LOCAL)] == [other]
    for table in TABLES[1:]:
        with sqlite3.connect(db_path) as conn:
            assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", [run_id]).fetchone()[0] == 0
    for call in (store.get, store.delete, store.token_rows, store.head_rows):
        with pytest.raises(RunNotFoundError, match=f"no run with id {run_id}"):
            call(run_id, viewer=LOCAL)
    with pytest.raises(RunNotFoundError):
        store.head_map(run_id, 0, 0, viewer=LOCAL)


def test_default_cache_key_is_the_request_key(db_path: Path) -> None:
    from sinkfix.cache import key_of_analysis

    analysis = synthetic_analysis()
    store = Store(db_path)
    run_id = store.save(analysis, viewer=LOCAL)
    assert store.find(key_of_analysis(analysis), viewer=LOCAL) == run_id


def test_wal_busy_timeout_and_one_connection_per_thread(db_path: Path) -> None:
    store = Store(db_path)
    main_db = store._db()
    assert main_db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert main_db.execute("PRAGMA busy_timeout").fetchone()[0] == database.BUSY_TIMEOUT_MS
    seen: dict[str, object] = {}

    def work() -> None:
        seen["db"] = store._db()
        seen["run"] = store.save(synthetic_analysis(seed=9), viewer=LOCAL)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen["db"] is not main_db  # a sqlite3 connection used across threads would raise
    assert store.get(seen["run"], viewer=LOCAL).text == synthetic_analysis(seed=9).text


def test_a_save_that_fails_halfway_leaves_no_rows(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(db_path)
    kept = store.save(synthetic_analysis(seed=1), viewer=LOCAL)
    real = store_runs.insert_blobs

    def fail_after_first_blob(conn: sqlite3.Connection, run_id: int, blobs: dict[str, bytes]) -> None:
        real(conn, run_id, dict(list(blobs.items())[:1]))
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store_runs, "insert_blobs", fail_after_first_blob)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.save(synthetic_analysis(seed=2), viewer=LOCAL)
    for table in TABLES:
        with sqlite3.connect(db_path) as conn:
            column = "id" if table == "runs" else "run_id"
            assert conn.execute(f"SELECT DISTINCT {column} FROM {table}").fetchall() == [(kept,)], table
    monkeypatch.undo()
    assert store.save(synthetic_analysis(seed=3), viewer=LOCAL) > kept  # the store is still usable


def test_a_process_killed_mid_save_leaves_no_partial_run(db_path: Path) -> None:
    script = f"""
import os
from sinkfix import store as st
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import run_rows as st_runs
from tests.synthetic import synthetic_analysis
store = st.Store({str(db_path)!r})
store.save(synthetic_analysis(seed=1), viewer=LOCAL)
real = st_runs.insert_heads
def crash(conn, run_id, rows):
    real(conn, run_id, rows)
    os._exit(3)  # no rollback, no cleanup: as if the machine lost power mid-transaction
st_runs.insert_heads = crash
store.save(synthetic_analysis(seed=2), viewer=LOCAL)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    store = Store(db_path)
    assert [r["id"] for r in store.list(viewer=LOCAL)] == [1]
    assert _rows(db_path, "run_tokens") == synthetic_analysis(seed=1).n_tokens
    assert _rows(db_path, "run_heads") == 2 * 3
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert_same_run(synthetic_analysis(seed=1), store.get(1, viewer=LOCAL))


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = _snapshot(path)
    with pytest.raises(StoreError, match="is not a SQLite database"):
        Store(path)
    assert _snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_a_corrupt_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    store = Store(path)
    store.save(synthetic_analysis(), viewer=LOCAL)
    store.close()  # the last connection folds the WAL into the file
    assert not path.with_name("broken.db-wal").exists()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wipe the schema page after the header
    path.write_bytes(bytes(data))
    before = _snapshot(path)
    with pytest.raises(StoreError, match="broken.db"):
        Store(path)
    assert _snapshot(path) == before


def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    before = _snapshot(path)
    with pytest.raises(StoreError, match="not a SinkFix one"):
        Store(path)
    assert _snapshot(path) == before


def test_a_database_from_a_newer_sinkfix_is_refused_untouched(db_path: Path) -> None:
    store = Store(db_path)
    store.save(synthetic_analysis(), viewer=LOCAL)
    store.close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
            [schema.MIGRATION_SET, "m999_from_the_future", "2099-01-01"],
        )
    with sqlite3.connect(db_path) as conn:  # fold the WAL into the file, so only the file matters
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _snapshot(db_path)
    with pytest.raises(StoreError, match="newer SinkFix.*m999_from_the_future"):
        Store(db_path)
    assert _snapshot(db_path) == before


def test_no_pickle_anywhere_in_the_database(db_path: Path) -> None:
    store = Store(db_path)
    for seed, causal in [(0, False), (1, True)]:
        store.save(synthetic_analysis(n_layers=2, n_heads=2, n_tokens=12, seed=seed, causal=causal), viewer=LOCAL)
    store.close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        blobs = conn.execute("SELECT name, data FROM run_blobs").fetchall()
    data = db_path.read_bytes()
    for marker in PICKLE_MARKERS:
        assert marker not in data, marker
    # Every blob is a (compressed) safetensors container that decodes without any unpickling.
    assert blobs and all(tensorio.loads(blob) for _, blob in blobs)
    assert all(blob.startswith(tensorio.MAGIC) for _, blob in blobs)
