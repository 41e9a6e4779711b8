"""The dashboard as `make run` starts it listens on 127.0.0.1 only; a shared start without sign-in refuses.

`make run` itself is started (its setup step skipped with ``-o setup``), on a free port given through
Streamlit's environment variable, so the address comes from the repository's own files.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def other_local_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback (the ones a neighbour would use)."""
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


def listening(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_", "SINKFIX_DASHBOARD"))}
    return {**env, "STREAMLIT_SERVER_HEADLESS": "true", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **extra}


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every socket listening in the process ``pid`` and its children."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for process in processes:
        try:
            found |= {(c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture()
def make_run() -> Iterator[set[tuple[str, int]]]:
    """`make run` as a user starts it (setup skipped); yields the sockets its server listens on."""
    if not (REPO / ".venv" / "bin" / "streamlit").exists():
        pytest.skip("needs the project's .venv (make setup)")
    port = free_port()  # through Streamlit's variable, so a test never takes 8501 from a user
    process = subprocess.Popen(["make", "--no-print-directory", "-o", "setup", "run"], cwd=REPO,
                               env=clean_env(STREAMLIT_SERVER_PORT=str(port)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            sockets = listening_sockets(process.pid)
            if sockets:
                ports = {p for _, p in sockets}
                try:  # serving, not only bound: the health endpoint answers on loopback
                    with urllib.request.urlopen(f"http://127.0.0.1:{min(ports)}/_stcore/health", timeout=2) as answer:
                        if answer.read() == b"ok":
                            break
                except OSError:
                    pass
            assert process.poll() is None, process.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the dashboard did not start within 90 s"
            time.sleep(0.3)
        yield listening_sockets(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # make and the streamlit it started: their own group
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_make_run_listens_on_loopback_only(make_run: set[tuple[str, int]]) -> None:
    assert {address for address, _ in make_run} == {"127.0.0.1"}
    for address in other_local_addresses():
        for _, port in make_run:
            with pytest.raises(OSError):  # refused: nothing listens there
                socket.create_connection((address, port), timeout=2).close()


def test_sinkfix_dashboard_shared_without_sign_in_refuses(tmp_path: Path) -> None:
    pytest.importorskip("sinkfix.cli.dashboard", reason="the `sinkfix dashboard` command (issue 21) is not here yet")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "sinkfix", "dashboard", "--host", "0.0.0.0", "--port", str(port)],
                               cwd=tmp_path, env=clean_env(HOME=str(tmp_path)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # it started a server after all: stop it and whatever it started
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sinkfix: error: refusing to serve the dashboard on 0.0.0.0 "
                                                   "without sign-in")
    assert listening(port) == set()
