"""The window experiment on the Experiments page against the CLI, same settings (issue 22: page within 1.2x).

Starts `streamlit run` on a free loopback port with a throw-away database, runs the masked-window form
twice in Debian's chromium (the first run includes loading the model, the second does not; the status
label splits model and experiment time), then the CLI once, and prints the three times. Run it on an
idle machine: on a shared one the numbers say more about the neighbours than about the page.

    .venv/bin/python benchmarks/dashboard_speed.py [--tokens 2048] [--window 256] [--sinks 0,1,2,4,8]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the browser tests' server helper
from tests.browser.streamlit_server import chromium_tab, streamlit_server


def page_runs(env: dict, tokens: str, window: str, sinks: str, runs: int = 2) -> list[tuple[float, str]]:
    out = []
    with streamlit_server(Path(env["SINKFIX_DB"]), env=env) as url, \
            chromium_tab(width=1400, timeout_ms=3_600_000) as tab:
        for _ in range(runs):
            tab.goto(f"{url}/experiments")
            button = tab.get_by_role("button", name="Run the window experiment")
            button.wait_for()
            tab.wait_for_timeout(1500)
            form = tab.locator("[data-testid='stForm']").first
            form.get_by_label("Tokens").fill(tokens)
            form.get_by_label("Window W (recent R)").fill(window)
            form.get_by_label("Sinks (k)").fill(sinks)
            started = time.perf_counter()
            button.click()
            done = tab.get_by_text(re.compile(r"Saved as experiment \d+|failed")).first
            done.wait_for()
            out.append((time.perf_counter() - started, done.inner_text()))
    return out


def cli_run(env: dict, text_file: str, tokens: str, window: str, sinks: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sinkfix", "streaming", "--model", "smollm2-135m", "--text-file", text_file,
                    "--tokens", tokens, "--window", window, "--sinks", sinks, "--no-save"], cwd=REPO, env=env,
                   check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", default="2048")
    parser.add_argument("--window", default="256")
    parser.add_argument("--sinks", default="0,1,2,4,8")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="folder holding tinyshakespeare.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "SINKFIX_DB": str(Path(scratch) / "speed.db"), "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "SINKFIX_DATA": args.data}
        for number, (seconds, label) in enumerate(page_runs(env, args.tokens, args.window, args.sinks), start=1):
            print(f"page run {number}: {seconds:.1f} s  [{label}]")
        cli = cli_run(env, str(Path(args.data) / "tinyshakespeare.txt"), args.tokens, args.window, args.sinks)
        print(f"CLI: {cli:.1f} s (one process: imports, model load and the experiment)")


if __name__ == "__main__":
    main()
