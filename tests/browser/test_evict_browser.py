"""The Eviction tab in a real browser: a stored sweep (tiny random Llama, fast) opened by its deep link,
every chart drawn, no error box, a full-page screenshot under tests/artifacts/ for a human to look at.

``EVICT_SCREENSHOT_JSON=path`` shows a stored sweep from a file instead (e.g. the default sweep's JSON from
benchmarks/evidence_evict.py), which is how docs/img/evict-tab.png is made."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import sinkfix
from sinkfix.experiments.evict import sweep
from sinkfix.store import Store

from .streamlit_server import chromium_tab, streamlit_server
from .test_dashboard_browser import ARTIFACTS, TIMEOUT_MS, errors_on, settle, snap

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser


def _result(tiny_model_dirs) -> dict:
    path = os.environ.get("EVICT_SCREENSHOT_JSON")
    if path:
        return json.loads(Path(path).read_text())
    loaded = sinkfix.load_model(str(tiny_model_dirs["llama"]))
    return sweep.run_sweep(loaded, sweep.SweepSettings(lengths=(80, 100), depths=(0.3, 0.7), seeds=1)).to_json()


def test_a_stored_sweep_in_the_browser(tmp_path: Path, tiny_model_dirs) -> None:
    database = tmp_path / "sinkfix.db"
    experiment_id = Store(database).save_experiment("evict", _result(tiny_model_dirs), "browser", 1.0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with streamlit_server(database, tmp_path / "streamlit.log") as url, chromium_tab(width=1400, timeout_ms=TIMEOUT_MS) as tab:
        tab.goto(f"{url}/experiments?evict={experiment_id}")
        tab.get_by_text(f"Experiment {experiment_id} · evict").wait_for()
        settle(tab)
        assert not errors_on(tab)
        assert tab.locator("[data-testid='stVegaLiteChart']").count() >= 4  # accuracy, heatmap, forest, kept keys
        snap(tab, "31-experiments-eviction")
