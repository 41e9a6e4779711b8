"""Two processes saving into one (initially missing) database at the same time lose nothing."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
from tests.synthetic import assert_same_run, synthetic_analysis

REPO = Path(__file__).resolve().parents[2]
SAVES = 20

WRITER = """
import sys, time
from pathlib import Path
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
from tests.synthetic import synthetic_analysis
db, go, worker, saves = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
analyses = [synthetic_analysis(n_layers=2, n_heads=3, n_tokens=8, seed=100 * worker + i,
                               text=f"worker {worker} run {i}") for i in range(saves)]
while not go.exists():  # start together, so the opening migrations and the saves race
    time.sleep(0.01)
store = Store(db)
for analysis in analyses:
    store.save(analysis, viewer=LOCAL)
"""


def test_two_processes_saving_at_once_lose_nothing(tmp_path: Path) -> None:
    db, go = tmp_path / "shared.db", tmp_path / "go"
    workers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(go), str(w), str(SAVES)], cwd=REPO,
                         stderr=subprocess.PIPE, text=True)
        for w in (1, 2)
    ]
    time.sleep(0.5)  # both are importing; the go file releases whichever is ready
    go.touch()
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err

    store = Store(db)
    assert store.count(viewer=LOCAL) == 2 * SAVES
    rows = store.list(limit=1000, viewer=LOCAL)
    assert len({row["id"] for row in rows}) == 2 * SAVES
    assert {row["text"] for row in rows} == {f"worker {w} run {i}" for w in (1, 2) for i in range(SAVES)}
    # Every run is whole: its arrays, maps and summary rows all read back exactly.
    for row in rows:
        worker, i = int(row["text"].split()[1]), int(row["text"].split()[3])
        expected = synthetic_analysis(n_layers=2, n_heads=3, n_tokens=8, seed=100 * worker + i, text=row["text"])
        assert_same_run(expected, store.get(row["id"], viewer=LOCAL))
        assert len(store.head_rows(row["id"], viewer=LOCAL)) == 6


def test_switching_to_wal_retries_a_busy_answer(tmp_path: Path) -> None:
    """SQLite answers a lock deadlock (two processes switching a fresh file to WAL at once) with an
    immediate SQLITE_BUSY, not a wait. A connection with no busy timeout gets that same answer while
    another holds a read lock; the switch must retry until the lock is gone, not fail the open."""
    import sqlite3
    import threading

    from sinkfix.store.database import _switch_to_wal

    path = tmp_path / "fresh.db"
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("CREATE TABLE t (x)")
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM t").fetchall()  # a read transaction: a shared lock until COMMIT
    switcher = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        try:
            switcher.execute("PRAGMA journal_mode=WAL")
            raise AssertionError("expected SQLITE_BUSY while the reader holds its lock")
        except sqlite3.OperationalError as error:
            assert "locked" in str(error)
        release = threading.Timer(0.3, lambda: reader.execute("COMMIT"))
        release.start()
        _switch_to_wal(switcher)
        release.join()
        assert switcher.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        switcher.close()
        reader.close()
