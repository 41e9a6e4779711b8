"""The layer-profile chart in a real browser (Debian chromium via Playwright against ``streamlit run``).

A MiniLM profile over a small corpus is stored before the server starts; the deep link ``?finding=ID``
opens the Layer profile tab. The test asserts the page ran with no exception, the chart drew (its
canvas exists and carries the token-0 line's red and the entropy line's green), and the sentence in
words is shown. The screenshot goes to tests/artifacts/profile-chart.png (git-ignored).
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from ..tiny_models import WORDS
from .streamlit_server import chromium_tab, streamlit_server

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 120_000
RED, GREEN = (0xB2, 0x18, 0x2B), (0x1B, 0x78, 0x37)  # sinkfix.plots.profile.COLORS


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, minilm) -> tuple[Path, int, dict]:
    from sinkfix.experiments import profile
    from sinkfix.store import Store

    text = " ".join(random.Random(3).choices(WORDS, k=3000))
    result = profile.profile_corpus(minilm, text, "toy.txt", n_windows=6, length=48).to_json()
    path = tmp_path_factory.mktemp("profile-browser") / "sinkfix.db"
    store = Store(path)
    experiment_id = store.save_experiment("profile", result, "browser test", 1.0)
    store.close()
    return path, experiment_id, result


@pytest.fixture(scope="module")
def server(stored, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with streamlit_server(stored[0], tmp_path_factory.getbasetemp() / "streamlit-profile.log") as url:
        yield url


def coloured_pixels(png: bytes, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    picture = Image.open(BytesIO(png)).convert("RGB")
    return sum(1 for p in picture.getdata() if all(abs(a - b) <= tolerance for a, b in zip(p, rgb)))


def test_the_profile_chart_draws(server: str, stored) -> None:
    _, experiment_id, result = stored
    with chromium_tab(width=1440, height=5200, timeout_ms=TIMEOUT_MS) as tab:
        tab.goto(f"{server}/experiments?finding={experiment_id}")
        tab.get_by_text(f"Experiment {experiment_id} · profile").first.wait_for()
        tab.wait_for_function("() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState "
                              "=== 'notRunning'", timeout=TIMEOUT_MS)
        assert tab.get_by_role("tab", name="Layer profile").get_attribute("aria-selected") == "true"
        chart = tab.locator("[data-testid='stVegaLiteChart']").filter(
            has=tab.locator("[aria-label*='Layer profile']")).first
        chart.locator("canvas, svg").first.wait_for(state="attached")
        tab.wait_for_timeout(800)
        assert tab.locator("[data-testid='stException']").count() == 0, "a traceback is on the page"
        assert tab.locator("[data-testid='stAlertContentError']").count() == 0
        png = chart.screenshot()
        assert coloured_pixels(png, RED) > 200, "the token-0 norm line is not drawn"
        assert coloured_pixels(png, GREEN) > 200, "the entropy line is not drawn"
        assert result["together"]["sentence"][:40] in tab.content()
        artifacts = REPO / "tests" / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "profile-chart.png").write_bytes(png)
        (artifacts / "profile-page.png").write_bytes(tab.screenshot(full_page=True))
