"""One `streamlit run dashboard/Home.py` on a free loopback port, and one chromium tab to drive it: for the
browser tests, docs/screenshot.py and benchmarks/dashboard_speed.py."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's, not Playwright's download
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("streamlit did not become healthy")


@contextmanager
def streamlit_server(database: Path, log_path: Path | None = None, env: dict[str, str] | None = None,
                     installed: bool = False) -> Iterator[str]:
    """Serve the dashboard over ``database``; yields its URL and stops it. Its output goes to ``log_path``
    (or nowhere); ``env`` adds variables; ``installed`` starts it as ``sinkfix dashboard`` (the packaged
    app) rather than ``streamlit run dashboard/Home.py``. Shared by the browser tests, docs/screenshot.py
    and benchmarks/dashboard_speed.py."""
    port = free_port()
    env = {**os.environ, "SINKFIX_DB": str(database), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           **(env or {})}
    command = ([sys.executable, "-m", "sinkfix", "dashboard", "--port", str(port)] if installed else
               [sys.executable, "-m", "streamlit", "run", "dashboard/Home.py", "--server.headless", "true",
                "--server.address", "127.0.0.1", "--server.port", str(port)])
    with (log_path.open("w") if log_path else open(os.devnull, "w")) as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def chromium_tab(width: int = 1440, height: int = 1000, timeout_ms: int = 120_000) -> Iterator:
    """A Playwright page in headless Debian chromium; closes the browser afterwards."""
    from playwright.sync_api import sync_playwright  # only the browser callers need it

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": width, "height": height})
            tab.set_default_timeout(timeout_ms)
            yield tab
        finally:
            browser.close()
