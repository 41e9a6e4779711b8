"""The dashboard in a real browser: Debian's chromium driven by Playwright against `streamlit run`.

Visits every page, runs analyses, clicks a head in the drill-down grid, reloads to check the URL
restores the view, and saves full-page screenshots under tests/artifacts/ (git-ignored) for a human
to look at.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from .streamlit_server import chromium_tab, streamlit_server

playwright_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
TIMEOUT_MS = 90_000

# One chromium and one dashboard server at a time on the machine (pytest-xdist keeps a group on one worker).
pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with streamlit_server(tmp_path_factory.mktemp("browser") / "sinkfix.db",
                          tmp_path_factory.getbasetemp() / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium_tab(width=1400, timeout_ms=TIMEOUT_MS) as tab:
        yield tab


def settle(tab) -> None:
    """Wait until the script run is over and every chart on the page has drawn."""
    tab.wait_for_load_state("networkidle")
    tab.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning' "
        "&& !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS
    )
    tab.wait_for_timeout(1200)
    charts = tab.locator("[data-testid='stVegaLiteChart']")
    for index in range(charts.count()):
        charts.nth(index).locator("canvas, svg").first.wait_for(state="attached")
    assert tab.locator("[data-testid='stException']").count() == 0, "a traceback is on the page"


def snap(tab, name: str) -> Path:
    """A full-page screenshot. Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    height = tab.evaluate(
        "() => Math.max(...Array.from(document.querySelectorAll('[data-testid=\"stMain\"], "
        "[data-testid=\"stMainBlockContainer\"], section')).map(e => e.scrollHeight), 800)"
    )
    tab.set_viewport_size({"width": 1400, "height": int(min(height + 80, 12000))})
    tab.wait_for_timeout(800)
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    tab.set_viewport_size({"width": 1400, "height": 1000})
    return path


def errors_on(tab) -> list[str]:
    return tab.locator("[data-testid='stAlertContentError']").all_inner_texts()


def test_every_page_in_a_real_browser(server: str, page) -> None:
    tab = page
    tab.goto(server)
    tab.get_by_text("Models that work here").wait_for()
    settle(tab)
    assert "No runs yet" in tab.content()
    snap(tab, "01-home-empty")

    # The one-click example runs the seed sentence and lands on Analyze with ?run=1.
    tab.get_by_role("button", name="Run the example").click()
    tab.wait_for_url(re.compile(r".*/analyze\?run=1"))
    tab.get_by_text("Run 1 · minilm · 15 tokens").wait_for()
    settle(tab)
    assert not errors_on(tab)
    snap(tab, "02-analyze-seed-example")

    # A second analysis with looser thresholds, so some tokens are detrimental and the correction shows.
    tab.get_by_role("textbox", name="Text", exact=True).fill("The cat sat on the mat <b>bold</b> & friends.")
    set_number(tab, "τ_att", 0.04)
    set_number(tab, "τ_norm", 0.85)
    tab.get_by_role("button", name="Analyze", exact=True).click()
    tab.wait_for_url(re.compile(r".*/analyze\?run=2"))
    tab.get_by_text(re.compile(r"Run 2 · minilm")).wait_for()
    settle(tab)
    assert not errors_on(tab)
    assert tab.locator("b", has_text="bold").count() == 0  # the <b> in the text is shown, not rendered
    snap(tab, "03-analyze-second-run")

    # Analyze links into the drill-down; a click on a grid cell opens that head and goes into the URL.
    tab.get_by_role("link", name="Open in drill-down").click()
    tab.wait_for_url(re.compile(r".*/drilldown\?run=2"))
    tab.get_by_text("Layer 0, head 0: attention map").wait_for()
    settle(tab)
    click_grid_cell(tab, layer=4, head=7, n_layers=6, n_heads=12)
    tab.get_by_text("Layer 4, head 7: attention map").wait_for()
    settle(tab)
    assert re.search(r"layer=4", tab.url) and re.search(r"head=7", tab.url), tab.url
    tab.reload()
    tab.get_by_text("Layer 4, head 7: attention map").wait_for()
    settle(tab)
    assert not errors_on(tab)
    snap(tab, "04-drilldown-layer4-head7")

    tab.get_by_role("link", name="History").first.click()
    # The count line ("**2** matching runs; showing 1–2."), not the "Export all 2 matching runs" button.
    tab.get_by_text(re.compile(r"matching runs; showing")).wait_for()
    settle(tab)
    assert not errors_on(tab)
    # Select both rows (the grid is a canvas: click the row checkboxes by position), then compare them.
    table = tab.locator("[data-testid='stDataFrame']").first
    table.locator("canvas").first.wait_for()
    grid = table.bounding_box()
    for row in range(2):
        tab.mouse.click(grid["x"] + 16, grid["y"] + 35 * (row + 1) + 17)
        # The selection reruns the page; wait until it reports the new count before the next click.
        tab.get_by_role("button", name=f"Delete {row + 1} selected").wait_for()
    settle(tab)
    snap(tab, "05-history-two-selected")
    tab.get_by_role("button", name="Compare").click()
    tab.wait_for_url(re.compile(r".*/compare\?runs=2(,|%2C)1"))
    tab.get_by_text("Sinks per run").wait_for()
    settle(tab)

    tab.goto(f"{server}/compare?runs=1,2")
    tab.get_by_text("Sinks per run").wait_for()
    settle(tab)
    assert not errors_on(tab)
    assert "The token lists differ" in tab.content()
    snap(tab, "06-compare-runs-1-2")

    tab.goto(f"{server}/drilldown?run=999")
    tab.get_by_text("no run with id 999").wait_for()
    settle(tab)
    snap(tab, "07-drilldown-unknown-run")

    tab.goto(server)
    tab.get_by_text("Latest runs").wait_for()
    settle(tab)
    snap(tab, "08-home-with-runs")

    # Every page in the navigation, including ones added later, renders without a traceback or error.
    links = tab.locator("[data-testid='stSidebarNav'] a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert len(hrefs) >= 5, hrefs
    for number, href in enumerate(hrefs, start=9):
        title = href.rstrip("/").rsplit("/", 1)[-1] if href.rstrip("/") != server else "home"
        tab.goto(href if href.startswith("http") else f"{server}/{href.lstrip('/')}")
        tab.get_by_role("heading", level=1).first.wait_for()
        settle(tab)
        assert not errors_on(tab), (title, errors_on(tab))
        snap(tab, f"{number:02d}-nav-{re.sub(r'[^a-z0-9]+', '-', title.lower()).strip('-') or 'home'}")


def set_number(tab, label: str, value: float) -> None:
    """Type a threshold into its number box (the Analyze form keeps typed values exactly) and commit it."""
    box = tab.get_by_role("spinbutton", name=label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    tab.wait_for_timeout(500)
    assert float(box.input_value()) == pytest.approx(value)


def click_grid_cell(tab, layer: int, head: int, n_layers: int, n_heads: int) -> None:
    """Click the heatmap cell of (layer, head): the grid is the first chart after the metric picker."""
    chart = tab.locator("[data-testid='stVegaLiteChart']").nth(1)
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    # head_grid's cell size (see sinkfix/plots/analysis.py).
    cell_w = min(36, max(14, 420 // n_heads))
    cell_h = min(30, max(12, 420 // n_layers))
    left, top = _plot_origin(chart, box, cell_w * n_heads)
    tab.mouse.click(left + (head + 0.5) * cell_w, top + (layer + 0.5) * cell_h)


def _plot_origin(chart, box, grid_width: int) -> tuple[float, float]:
    """Vega draws on a canvas: find the grid's top-left corner by scanning for the first coloured pixel row."""
    picture = Image.open(BytesIO(chart.screenshot())).convert("RGB")
    width, height = picture.size
    scale_x, scale_y = width / box["width"], height / box["height"]

    def coloured(x: int, y: int) -> bool:
        r, g, b = picture.getpixel((x, y))
        return max(r, g, b) - min(r, g, b) > 40  # viridis cells are saturated; text and axes are grey

    for y in range(height):
        xs = [x for x in range(width) if coloured(x, y)]
        if len(xs) > grid_width * scale_x * 0.6:
            return box["x"] + xs[0] / scale_x, box["y"] + y / scale_y
    raise AssertionError("no heatmap found in the drill-down grid chart")


def choose(tab, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    box = tab.locator("[data-testid='stSelectbox']").filter(has=tab.get_by_text(label, exact=True)).first
    box.click()
    tab.get_by_role("option", name=option, exact=True).click()
    tab.wait_for_timeout(500)


def run_id_in(url: str) -> int:
    found = re.search(r"run=(\d+)", url)
    assert found, url
    return int(found.group(1))


def test_rerun_compare_models_reopen_an_evaluation(server: str, page) -> None:
    tab = page
    text = "The quick brown fox's den, by the river."
    # A MiniLM run of the text, with τ_att lowered so some tokens are detrimental.
    tab.goto(f"{server}/analyze")
    tab.get_by_role("button", name="Analyze", exact=True).wait_for()
    settle(tab)
    tab.get_by_role("textbox", name="Text", exact=True).fill(text)
    set_number(tab, "τ_att", 0.05)
    tab.get_by_role("button", name="Analyze", exact=True).click()
    tab.get_by_text(re.compile(r"Run \d+ · minilm")).wait_for()
    settle(tab)
    original = run_id_in(tab.url)

    # Opening the stored run fills the form with its text and thresholds (not the seed defaults).
    tab.goto(f"{server}/analyze?run={original}")
    tab.get_by_role("button", name="Re-run with these settings").wait_for()
    settle(tab)
    assert tab.get_by_role("textbox", name="Text", exact=True).input_value() == text
    assert float(tab.get_by_role("spinbutton", name="τ_att", exact=True).input_value()) == pytest.approx(0.05)
    snap(tab, "20-analyze-stored-run-in-form")
    set_number(tab, "τ_norm", 0.95)
    tab.get_by_role("button", name="Re-run with these settings").click()
    tab.get_by_text(f"Re-run of run {original}").first.wait_for()
    settle(tab)
    rerun = run_id_in(tab.url)
    assert rerun != original and not errors_on(tab)
    snap(tab, "21-analyze-rerun-links-back")

    # The same text on SmolLM2, then both models compared word by word and by relative depth.
    choose(tab, "Model", "smollm2-135m")
    tab.get_by_role("button", name="Analyze", exact=True).click()
    tab.get_by_text(re.compile(r"Run \d+ · smollm2-135m")).wait_for()
    settle(tab)
    smol = run_id_in(tab.url)
    tab.goto(f"{server}/compare?runs={original},{smol}")
    tab.get_by_text("Aligned by words", exact=True).wait_for()
    tab.get_by_text("Layer by layer, on a relative depth axis", exact=True).wait_for()
    settle(tab)
    assert not errors_on(tab)
    assert "cannot be aligned" not in tab.content()
    snap(tab, "22-compare-minilm-smollm2-words-depth")

    # An evaluation on the page, then reopened from its deep link with all its charts.
    tab.goto(f"{server}/evaluate")
    tab.get_by_role("button", name="Evaluate", exact=True).wait_for()
    settle(tab)
    tab.get_by_role("textbox", name="β sweep").fill("1.0, 0.0")
    tab.get_by_role("button", name="Evaluate", exact=True).click()
    tab.get_by_text(re.compile(r"Evaluation \d+ · smollm2")).wait_for()
    settle(tab)
    assert not errors_on(tab)
    evaluation = int(re.search(r"Evaluation (\d+) ·", tab.content()).group(1))
    tab.goto(f"{server}/evaluate?evaluation={evaluation}")
    tab.get_by_text("KL along the text").first.wait_for()
    settle(tab)
    assert not errors_on(tab)
    assert "β sweep beside the controls" in tab.content() and "Per-sink evidence" in tab.content()
    snap(tab, "23-evaluate-reopened")
    tab.get_by_role("tab", name="Findings").click()
    tab.get_by_text("Findings: does correcting sinks help?").wait_for()
    settle(tab)
    snap(tab, "24-evaluate-findings")

    tab.goto(f"{server}/experiments")
    tab.get_by_role("heading", name="Experiments").wait_for()
    settle(tab)
    assert not errors_on(tab)
    snap(tab, "25-experiments")
    tab.get_by_role("tab", name="Mechanisms").click()
    tab.wait_for_timeout(800)
    settle(tab)
    assert not errors_on(tab)
    snap(tab, "26-experiments-mechanisms")
