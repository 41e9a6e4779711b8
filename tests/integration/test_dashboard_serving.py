"""The dashboard as `make run` starts it listens on 127.0.0.1 only; a shared start without sign-in refuses.

`make run` itself is started (its setup step skipped with ``-o setup``), on a free port given through
Streamlit's environment variable, so the address comes from the repository's own files.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
# A real dashboard server: kept on the worker that runs the browser tests, so two never overlap.
pytestmark = pytest.mark.xdist_group("browser")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def other_local_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback (the ones a neighbour would use)."""
    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET and not a.address.startswith("127.")]


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


def test_sinkfix_dashboard_shared_without_sign_in_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's own code, in process: a SinkFixError (which `sinkfix` prints as one `sinkfix: error:` line,
    exit status 2) before any server is started; with a token it goes on to start one."""
    dashboard = pytest.importorskip("sinkfix.cli.dashboard",
                                    reason="the `sinkfix dashboard` command (issue 21) is not here yet")
    from sinkfix.policy.signin import SharedWithoutSignInError

    def started(*args, **kwargs):
        raise AssertionError(f"a server was started: {args}")

    # Every way the command could become or start Streamlit ends the test instead (never a real server).
    for module, name in ((dashboard.os, "execv"), (dashboard.os, "execvp"), (dashboard.subprocess, "Popen"),
                         (dashboard.subprocess, "call"), (dashboard.subprocess, "run")):
        monkeypatch.setattr(module, name, started)
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml here
    monkeypatch.setenv("HOME", str(tmp_path))  # nor in the user's folder
    monkeypatch.delenv("SINKFIX_DASHBOARD_TOKEN", raising=False)
    shared = argparse.Namespace(host="0.0.0.0", port=free_port())
    with pytest.raises(SharedWithoutSignInError, match="^refusing to serve the dashboard on 0.0.0.0 without "
                                                       "sign-in: set SINKFIX_DASHBOARD_TOKEN"):
        dashboard.run_dashboard(shared)
    monkeypatch.setenv("SINKFIX_DASHBOARD_TOKEN", "lab-token-0123456789")
    with pytest.raises(AssertionError, match="a server was started"):
        dashboard.run_dashboard(shared)
