"""The API under faults: a full disk (507), a read-only database (reads served, writes refused),
and a server SIGKILLed in the middle of a stream of writes (no partial run, every committed run served)."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import sinkfix
from sinkfix import api, models
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store, database

REPO = Path(__file__).resolve().parents[2]
LONG = "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat. " * 3


@pytest.fixture()
def client(db_path: Path, minilm: sinkfix.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(models.loading, "load_model", lambda name, progress=None, **_: minilm)
    api.reset()
    yield TestClient(api.app)
    api.reset()


def sql(path: Path, query: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


def no_partial_runs(path: Path) -> None:
    """Every run has all its rows: tokens, heads and the arrays blob (one transaction per run)."""
    for run_id, n_tokens, n_layers, n_heads in sql(path, "SELECT id, n_tokens, n_layers, n_heads FROM runs"):
        assert sql(path, f"SELECT COUNT(*) FROM run_tokens WHERE run_id = {run_id}")[0][0] == n_tokens
        assert sql(path, f"SELECT COUNT(*) FROM run_heads WHERE run_id = {run_id}")[0][0] == n_layers * n_heads
        assert sql(path, f"SELECT COUNT(*) FROM run_blobs WHERE run_id = {run_id} AND name = 'arrays'")[0][0] == 1
    for table in ("run_tokens", "run_heads", "run_blobs"):
        assert sql(path, f"SELECT COUNT(*) FROM {table} WHERE run_id NOT IN (SELECT id FROM runs)")[0][0] == 0
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]


def test_full_disk_is_507_then_writes_succeed_once_there_is_room(client: TestClient, db_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first = client.post("/api/analyze", json={"text": LONG}).json()["run_id"]
    limit: list[int] = []
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):  # every new connection of the server sees SQLite's page limit
        conn = real_connect(*args, **kwargs)
        if limit:
            conn.execute(f"PRAGMA max_page_count = {limit[0]}")
        return conn

    monkeypatch.setattr(database.sqlite3, "connect", connect)
    limit.append(sql(db_path, "PRAGMA page_count")[0][0] + 1)
    api.reset()  # new connections, with the limit
    full = client.post("/api/analyze", json={"text": LONG[:120]})
    assert full.status_code == 507 and full.headers["content-type"] == "application/json"
    assert full.json()["detail"].startswith("the server's database: the disk is full, so nothing was saved")
    assert "Traceback" not in full.text and str(db_path) not in full.text
    assert Store(db_path).count(viewer=LOCAL) == 1
    no_partial_runs(db_path)
    assert client.get(f"/api/runs/{first}").status_code == 200  # reads still work
    Store(db_path).delete(first, viewer=LOCAL)  # room: the freed pages are reused within the same page limit
    again = client.post("/api/analyze", json={"text": LONG[:120]})
    assert again.status_code == 200 and not again.json()["cached"]
    no_partial_runs(db_path)


def test_read_only_database_serves_reads_and_refuses_writes(client: TestClient, db_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    stored = client.post("/api/analyze", json={"text": "A dog ran."}).json()
    api.reset()
    db_path.chmod(0o444)
    if os.geteuid() == 0:  # root may write any file: let the mode bits decide, as they do for other users
        monkeypatch.setattr(database, "_read_only_file", lambda p: p.exists() and not p.stat().st_mode & 0o222)
    assert client.get("/api/health").json()["database"] == "read-only"
    assert client.get("/api/runs").json()["total"] == 1
    assert client.get(f"/api/runs/{stored['run_id']}").json()["token_list"] == stored["token_list"]
    hit = client.post("/api/analyze", json={"text": "A dog ran."}).json()
    assert hit["cached"] and hit["run_id"] == stored["run_id"]
    refused = client.post("/api/analyze", json={"text": "A new text."})
    assert refused.status_code == 503 and "read-only" in refused.json()["detail"]
    assert Store(db_path, read_only=True).count(viewer=LOCAL) == 1


# ---------------------------------------------------------------- a killed server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(db: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "SINKFIX_DB": str(db), "HF_HUB_OFFLINE": "1", "SINKFIX_MAX_CONCURRENCY": "2"}
    server = subprocess.Popen([sys.executable, "-m", "sinkfix", "serve", "--port", str(port)], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
        try:
            if httpx.get(base + "/api/health").status_code == 200:
                return server, base
        except httpx.TransportError:
            time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_during_writes_leaves_no_partial_run_and_every_committed_run_is_served(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    server, base = _start(db)
    committed: dict[int, str] = {}
    lock = threading.Lock()

    def writer(worker: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            for i in range(1000):
                text = f"Writer {worker} line {i}: " + LONG[: 40 + 7 * i % 200]
                try:
                    response = http.post("/api/analyze", json={"text": text})
                except httpx.TransportError:
                    return  # the server is gone
                assert response.status_code == 200
                with lock:
                    committed[response.json()["run_id"]] = text

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    try:
        for thread in writers:
            thread.start()
        while len(committed) < 12:
            assert server.poll() is None
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGKILL)  # mid-stream: other writers' analyses and saves are in flight
        server.wait()
    finally:
        if server.poll() is None:
            server.kill()
        for thread in writers:
            thread.join()
    no_partial_runs(db)
    stored = dict(sql(db, "SELECT id, text FROM runs"))
    assert {i: stored.get(i) for i in committed} == committed  # every answered run was committed
    restarted, base = _start(db)
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            for run_id, text in committed.items():
                run = http.get(f"/api/runs/{run_id}").json()
                assert run["metadata"]["text"] == text and run["run_id"] == run_id
            run_id, text = next(iter(committed.items()))
            again = http.post("/api/analyze", json={"text": text}).json()
            assert again["cached"] and again["run_id"] == run_id
            assert http.get("/api/runs").json()["total"] == len(stored)
    finally:
        restarted.terminate()
        restarted.wait(timeout=20)
    print(f"\nSIGKILL after {len(committed)} answered runs; {len(stored)} committed, all whole")
