"""Take the dashboard screenshot shown by the README and the docs (docs/dashboard.png).

    .venv/bin/python docs/screenshot.py

It starts ``sinkfix dashboard`` on a free port with an empty temporary database, runs the Home
page's one-click example (the seed sentence on MiniLM) in Debian's chromium through Playwright,
and saves the results part of the Analyze page it lands on.
"""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # one server helper for the browser tests and this script
from tests.browser.streamlit_server import chromium_tab, streamlit_server

OUT = Path(__file__).resolve().parent / "dashboard.png"


def main() -> None:
    with (tempfile.TemporaryDirectory() as scratch,
          streamlit_server(Path(scratch) / "sinkfix.db", installed=True) as url,
          chromium_tab(width=1400, height=1050) as tab):
        tab.goto(url)
        tab.get_by_role("button", name="Run the example").click()
        tab.wait_for_url(re.compile(r".*/analyze\?run=1"))
        tab.get_by_text(re.compile(r"Run 1 · minilm")).wait_for()
        tab.wait_for_load_state("networkidle")
        tab.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
        tab.wait_for_timeout(4000)  # the charts draw after the script run ends
        charts = tab.locator("[data-testid='stVegaLiteChart']")
        for index in range(charts.count()):
            charts.nth(index).locator("canvas, svg").first.wait_for(state="attached")
        # Streamlit scrolls inside its main block: grow the viewport to the whole page, then
        # keep the run's results (token tiles and the first charts), not the form above them.
        height = tab.evaluate("() => Math.max(...Array.from(document.querySelectorAll("
                              "'[data-testid=\"stMain\"], section')).map(e => e.scrollHeight), 1050)")
        tab.set_viewport_size({"width": 1400, "height": int(min(height + 80, 12000))})
        tab.wait_for_timeout(3000)
        top = tab.get_by_text("Tokens, coloured by label").first.bounding_box()["y"] - 16
        tab.screenshot(path=str(OUT), full_page=True,
                       clip={"x": 290, "y": top, "width": 1100, "height": 1150})
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
