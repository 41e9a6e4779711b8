"""AppTest fixtures: a temporary database seeded through the core with minilm, and page helpers."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import sinkfix
from sinkfix import models
from sinkfix.policy.ownership import LOCAL
from sinkfix.settings import AnalysisSettings
from sinkfix.store import Store

from ..conftest import SEED_TEXT

HOME = str(Path(__file__).resolve().parents[2] / "dashboard" / "Home.py")
OIDC = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "c",
        "client_secret": "s", "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}
SCRIPT_TEXT = "<script>alert(1)</script> **bold** [link](http://x) :red[x] $x$"
TEXTS = {
    "seed": (SEED_TEXT, AnalysisSettings()),
    # Looser thresholds make "sat" and "mat" detrimental (MiniLM's value norms are all high but [CLS]'s),
    # so the correction and the has-detrimental filter have work to do.
    "cat": ("The cat sat on the mat.", AnalysisSettings(tau_att=0.05, tau_norm=0.85)),
    "script": (SCRIPT_TEXT, AnalysisSettings()),
}


@pytest.fixture(autouse=True)
def loopback_without_sign_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every page test runs as `make run` serves: on 127.0.0.1 (the repo's .streamlit/config.toml, whatever
    folder pytest starts in), with no sign-in configured. tests/dashboard/test_security.py changes both."""
    from streamlit import config

    monkeypatch.delenv("SINKFIX_DASHBOARD_TOKEN", raising=False)
    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield
    config.set_option("server.address", before)


@pytest.fixture(scope="session")
def seed_analyses(minilm: sinkfix.LoadedModel) -> dict[str, sinkfix.Analysis]:
    return {name: sinkfix.analyze(text, minilm, settings) for name, (text, settings) in TEXTS.items()}


@pytest.fixture()
def load_calls(minilm: sinkfix.LoadedModel, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every load_model call the dashboard makes; 'minilm' is served by the session's loaded model."""
    from dashboard import services

    calls: list[str] = []
    real = models.load_model

    def counting(name: str, progress=None, **placement):
        calls.append(name)
        if name == "minilm":
            if progress:
                progress("loading minilm (test double: the session's model)")
            return minilm
        return real(name, progress=progress, **placement)

    monkeypatch.setattr(models.loading, "load_model", counting)
    services.model_shelf.clear()
    st.cache_data.clear()  # results computed from a model in an earlier test (e.g. the massive badge)
    return calls


@pytest.fixture()
def run_ids(db_path: Path, seed_analyses: dict[str, sinkfix.Analysis], load_calls: list[str]) -> dict[str, int]:
    """The seeded runs' ids in a fresh database that SINKFIX_DB points to."""
    store = Store(db_path)
    ids = {name: store.save(analysis, viewer=LOCAL) for name, analysis in seed_analyses.items()}
    store.close()
    return ids


def open_page(page: str | None = None, **query: str) -> AppTest:
    """Run the app as Streamlit would: Home.py builds the navigation, then ``page`` runs with ``query``."""
    return open_as(None, page, **query)


def open_as(email: str | None, page: str | None = None, **query: str) -> AppTest:
    """``open_page`` as a visitor signed in with ``email`` through a stubbed OIDC provider (``OIDC``); None:
    as ``make run`` serves it, on loopback without sign-in."""
    app = AppTest.from_file(HOME, default_timeout=120)
    if email is not None:
        app.secrets["auth"] = OIDC
        app.user = {"is_logged_in": True, "email": email}
    for key, value in query.items():
        app.query_params[key] = value
    if page:
        app.switch_page(page)
    return app.run()


def assert_clean(app: AppTest) -> None:
    assert not app.exception, [e.message for e in app.exception]
    assert not app.error, [e.value for e in app.error]


def page_text(app: AppTest) -> str:
    """Everything the page shows as text or markdown, for content checks."""
    parts = [e.value for kind in ("title", "header", "subheader", "markdown", "caption", "text", "code",
                                  "info", "warning", "success") for e in getattr(app, kind)]
    return "\n".join(str(p) for p in parts)


def chart_specs(app: AppTest) -> list[tuple[dict, dict]]:
    """Every Vega-Lite chart on the page: (spec, {dataset name: DataFrame}). Streamlit moves the
    datasets out of the spec into Arrow blobs beside it."""
    import json

    import pyarrow as pa

    out = []
    for element in app.get("vega_lite_chart"):
        proto = element.proto
        data = {d.name: pa.ipc.open_stream(d.data.data).read_pandas() for d in proto.datasets}
        out.append((json.loads(proto.spec), data))
    return out
