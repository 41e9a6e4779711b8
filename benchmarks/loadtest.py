"""A bounded load test of the HTTP API on localhost: ``make loadtest``. It stops by itself.

Starts ``python -m sinkfix serve`` on 127.0.0.1 (a free port, a temporary database, a random token,
MiniLM only), sends REQUESTS requests from CLIENTS concurrent clients over a shuffled mix of new and
repeated texts (lines of tinyshakespeare), and reports latency percentiles, throughput, errors and
the server's peak RSS. Then it checks the database: every distinct text stored exactly once
(no lost, no duplicated run), every response for a text naming that run, and exactly one
computed response per text (the rest cache hits). A 429 (the model's line is full) is deliberate: the
client waits Retry-After seconds and sends again; it is counted, not an error. Exit status 1 if a check fails.
"""
from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SINKFIX_DATA", REPO.parent / "shared" / "data")) / "tinyshakespeare.txt"


@dataclass
class Outcome:
    text: str
    status: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    cached: bool | None = None
    retries: int = 0  # 429s answered with Retry-After before the final answer
    error: str | None = None


@dataclass
class Peak:
    rss: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


def texts(n_distinct: int, seed: int) -> list[str]:
    """Distinct lines of tinyshakespeare (20-200 characters), or numbered sentences without the file."""
    if DATA.exists():
        lines = sorted({line.strip() for line in DATA.read_text().splitlines() if 20 <= len(line.strip()) <= 200})
        return random.Random(seed).sample(lines, n_distinct)
    return [f"Sentence number {i} is about the {i % 7}th cat on the mat." for i in range(n_distinct)]


def schedule(distinct: list[str], n_requests: int, seed: int) -> list[str]:
    """Each text once, plus repeats drawn at random, shuffled: identical requests also arrive together."""
    rng = random.Random(seed)
    order = distinct + [rng.choice(distinct) for _ in range(n_requests - len(distinct))]
    rng.shuffle(order)
    return order


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def watch_rss(pid: int, peak: Peak) -> None:
    process = psutil.Process(pid)
    while not peak.stop.is_set():
        try:
            rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
            peak.rss = max(peak.rss, rss)
        except psutil.Error:
            return
        time.sleep(0.05)


def wait_ready(http: httpx.Client, server: subprocess.Popen, deadline: float, log: Path) -> None:
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"loadtest: the server exited with {server.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if http.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("loadtest: the server did not start in time")


def client(base: str, token: str, jobs: list[str], lock: threading.Lock, results: list[Outcome],
           deadline: float) -> None:
    with httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"}) as http:
        while time.monotonic() < deadline:
            with lock:
                if not jobs:
                    return
                text = jobs.pop()
            outcome = Outcome(text)
            started = time.perf_counter()
            try:
                while True:
                    response = http.post("/api/analyze", json={"model_name": "minilm", "text": text})
                    if response.status_code != 429 or "Retry-After" not in response.headers \
                            or time.monotonic() > deadline:
                        break
                    outcome.retries += 1
                    time.sleep(float(response.headers["Retry-After"]))
                outcome.status = response.status_code
                if response.status_code == 200:
                    body = response.json()
                    outcome.run_id, outcome.cached = body["run_id"], body["cached"]
                else:
                    outcome.error = response.text[:200]
            except httpx.HTTPError as error:
                outcome.error = f"{type(error).__name__}: {error}"
            outcome.seconds = time.perf_counter() - started
            with lock:
                results.append(outcome)


def check_store(db: Path, distinct: list[str], results: list[Outcome]) -> dict:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    stored = Counter(dict(conn.execute("SELECT text, COUNT(*) FROM runs GROUP BY text").fetchall()))
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    ids: dict[str, set[int]] = defaultdict(set)
    computed: Counter = Counter()
    for outcome in results:
        if outcome.status == 200:
            ids[outcome.text].add(outcome.run_id)
            computed[outcome.text] += not outcome.cached
    answered = [t for t in distinct if t in ids]
    return {
        "lost": sum(stored[t] == 0 for t in answered),
        "duplicated": sum(stored[t] > 1 for t in distinct),
        "split_ids": sum(len(ids[t]) != 1 for t in answered),
        "computed_not_once": sum(computed[t] != 1 for t in answered),
        "unexpected_runs": sum(n for t, n in stored.items() if t not in set(distinct)) - 1,  # minus the warm-up
        "integrity": integrity,
    }


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--distinct", type=int, default=150, help="distinct texts among the requests")
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=600, help="seconds; the test stops by then")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    distinct = texts(args.distinct, args.seed)
    jobs = schedule(distinct, args.requests, args.seed)[::-1]  # popped from the end
    token = secrets.token_urlsafe(24)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="sinkfix-loadtest-") as tmp:
        db = Path(tmp) / "load.db"
        env = {**os.environ, "SINKFIX_DB": str(db), "SINKFIX_API_TOKEN": token, "SINKFIX_API_MODELS": "minilm",
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        log = (Path(tmp) / "server.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "sinkfix", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--max-concurrency", str(args.max_concurrency), "--max-queue", str(args.max_queue)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        peak = Peak()
        results: list[Outcome] = []
        deadline = time.monotonic() + args.time_limit
        try:
            with httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"}) as http:
                wait_ready(http, server, deadline, Path(log.name))
                assert http.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
                started = time.perf_counter()
                http.post("/api/analyze", json={"model_name": "minilm", "text": "Warm-up: load the model."})
                load_seconds = time.perf_counter() - started
            threading.Thread(target=watch_rss, args=(server.pid, peak), daemon=True).start()
            lock = threading.Lock()
            threads = [threading.Thread(target=client, args=(base, token, jobs, lock, results, deadline))
                       for _ in range(args.clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
        finally:
            peak.stop.set()
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()
        checks = check_store(db, distinct, results)
    report(args, results, wall, load_seconds, peak.rss, checks)
    ok = (len(results) == args.requests and all(o.status == 200 for o in results)
          and not any(checks[k] for k in ("lost", "duplicated", "split_ids", "computed_not_once", "unexpected_runs"))
          and checks["integrity"] == "ok")
    print("loadtest: " + ("all checks passed" if ok else "CHECKS FAILED"))
    return 0 if ok else 1


def report(args: argparse.Namespace, results: list[Outcome], wall: float, load_seconds: float, rss: int,
           checks: dict) -> None:
    ok = [o for o in results if o.status == 200]
    latencies = sorted(o.seconds * 1000 for o in ok)
    hits = sum(bool(o.cached) for o in ok)
    rows = [
        ("requests sent / answered 200", f"{len(results)} / {len(ok)}"),
        ("concurrent clients", args.clients),
        ("distinct texts (new) / repeats", f"{args.distinct} / {args.requests - args.distinct}"),
        ("server --max-concurrency / --max-queue", f"{args.max_concurrency} / {args.max_queue}"),
        ("errors (non-200 after retries, transport)", len(results) - len(ok) + (args.requests - len(results))),
        ("deliberate 429s (retried after Retry-After)", sum(o.retries for o in results)),
        ("latency p50 / p95 / p99 (ms)", " / ".join(f"{percentile(latencies, q):.0f}" for q in (50, 95, 99))
         if latencies else "-"),
        ("throughput (requests/s)", f"{len(ok) / wall:.1f}"),
        ("wall time (s)", f"{wall:.1f}"),
        ("first request, loads MiniLM (s)", f"{load_seconds:.1f}"),
        ("server peak RSS (MiB)", f"{rss / 2**20:.0f}"),
        ("cache hits (expected / got)", f"{args.requests - args.distinct} / {hits}"),
        ("lost runs / duplicated runs", f"{checks['lost']} / {checks['duplicated']}"),
        ("texts with >1 run id / not computed exactly once", f"{checks['split_ids']} / {checks['computed_not_once']}"),
        ("PRAGMA integrity_check", checks["integrity"]),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\nSinkFix HTTP load test (MiniLM, localhost, {os.cpu_count()} CPUs)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    errors = Counter(o.error for o in results if o.status != 200)
    for error, n in errors.most_common(5):
        print(f"  error x{n}: {error}")


if __name__ == "__main__":
    sys.exit(main())
