"""Experiments → Lab: train from the form, store the sweep, open it by deep link with its curves and table."""
from __future__ import annotations

from pathlib import Path

import pytest

from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import assert_clean, chart_specs, open_page, page_text
from .test_lab_charts import _run

EXPERIMENTS = "views/experiments.py"


def test_deep_link_opens_a_stored_sweep(db_path: Path, load_calls: list[str]) -> None:
    from sinkfix.experiments.lab.summary import summarise

    result = summarise([_run("softmax", 0, 1.0), _run("softmax", 1, 1.0), _run("relu", 0, 0.1)], ["softmax", "relu"])
    experiment_id = Store(db_path).save_experiment("lab", result, "test sweep", 0.3, model="lab/backcopy", viewer=LOCAL)
    app = open_page(EXPERIMENTS, lab=str(experiment_id))
    assert_clean(app)
    assert f"Experiment {experiment_id} · lab" in page_text(app)
    finals = [frame.value for frame in app.dataframe if "papers' claim" in frame.value.columns][0]
    assert list(finals["variant"]) == ["softmax", "relu"]
    assert finals["first-token mass"].tolist() == pytest.approx([result["variants"][v]["first_token_mass"]["mean"]
                                                                 for v in ("softmax", "relu")])
    titles = [spec.get("title", {}) for spec, _ in chart_specs(app)]
    assert any("during training" in str(t) for t in titles)
    assert load_calls == []


def test_bad_lab_links_are_error_boxes(db_path: Path, load_calls: list[str]) -> None:
    app = open_page(EXPERIMENTS, lab="12345")
    assert not app.exception
    assert any("no stored lab experiment" in e.value for e in app.error)


def test_train_from_the_form(db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             load_calls: list[str]) -> None:
    monkeypatch.setenv("SINKFIX_CACHE", str(tmp_path / "cache"))
    app = open_page(EXPERIMENTS)
    app.number_input(key="lab_seeds").set_value(1)
    app.number_input(key="lab_steps").set_value(2)
    app.number_input(key="lab_batch").set_value(4)
    app.selectbox(key="lab_hidden").select(64)
    app = app.button(key="lab_run").click().run()
    assert_clean(app)
    rows = Store(db_path).experiments(kind="lab", viewer=LOCAL)
    assert len(rows) == 1
    stored = Store(db_path).experiment(rows[0]["id"], viewer=LOCAL)["result"]
    assert [run["variant"] for run in stored["runs"]] == ["softmax", "relu"]
    assert all(Path(run["model_dir"]).is_relative_to(tmp_path / "cache") for run in stored["runs"])
    assert app.query_params["lab"] == [str(rows[0]["id"])] or app.query_params["lab"] == str(rows[0]["id"])


def test_a_trained_lab_model_opens_in_the_analyze_page(db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       load_calls: list[str]) -> None:
    import numpy as np

    import sinkfix
    from sinkfix.experiments.lab.runner import run_lab
    from sinkfix.experiments.lab.settings import LabSettings

    result = run_lab(LabSettings(variants=("softpick",), seeds=1, steps=2, hidden=16, heads=2, length=8, batch_size=4),
                     root=tmp_path)
    model_dir = result.runs[0]["model_dir"]
    monkeypatch.setenv("SINKFIX_API_MODELS", f"minilm,{model_dir}")  # the server's model list (SEC's policy)
    app = open_page("views/analyze.py")
    app.selectbox(key="an_model").select("Other: hub id or local path").run()
    app.text_input(key="an_model_other").set_value(model_dir)
    text = "t1 t5 t9 t2"
    app.text_area(key="an_text").set_value(text)
    app = app.button(key="an_run").click().run()
    assert_clean(app)
    store = Store(db_path)
    assert store.count(viewer=LOCAL) == 1
    stored = store.get(store.list(viewer=LOCAL)[0]["id"], viewer=LOCAL)
    direct = sinkfix.analyze(text, sinkfix.load_model(model_dir))
    assert stored.tokens == direct.tokens and stored.tokens[0] == "<s>"
    assert np.allclose(stored.att_received, direct.att_received, atol=1e-6)


def test_training_takes_its_turn_in_the_servers_line(db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     load_calls: list[str]) -> None:
    """Training loads no model by name, so without a line of its own any visitor could start sweeps at will."""
    from dashboard import visitors
    from dashboard.sections import lab

    monkeypatch.setenv("SINKFIX_CACHE", str(tmp_path / "cache"))
    visitors.LINES.clear()
    seen: list[tuple[int, int]] = []
    real = lab.run_lab

    def watched(*args, **kwargs):
        seen.append(visitors.LINES[lab.TRAINING_LINE].counts())
        return real(*args, **kwargs)

    monkeypatch.setattr(lab, "run_lab", watched)
    app = open_page(EXPERIMENTS)
    app.number_input(key="lab_seeds").set_value(1)
    app.number_input(key="lab_steps").set_value(2)
    app.number_input(key="lab_batch").set_value(4)
    app = app.button(key="lab_run").click().run()
    assert_clean(app)
    assert seen == [(1, 0)]  # one sweep running while it trained, nobody waiting
    assert visitors.LINES[lab.TRAINING_LINE].counts() == (0, 0)
