"""Experiments → Layer profile: run the profile from the page and store it; open stored profiles, length
sweeps, BOS ablations and secondary-sink studies by deep link. Numbers are checked against the core."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

import sinkfix
from sinkfix.experiments import bos_ablation, lengths, profile, secondary
from sinkfix.store import Store

from ..tiny_models import WORDS
from .conftest import assert_clean, chart_specs, open_page, page_text

EXPERIMENTS = "views/experiments.py"
TEXT = " ".join(random.Random(1).choices(WORDS, k=3000))


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dirs: dict[str, Path]) -> sinkfix.LoadedModel:
    return sinkfix.load_model(str(tiny_model_dirs["llama"]))


def test_deep_link_opens_a_stored_profile(db_path: Path, minilm: sinkfix.LoadedModel, load_calls: list[str]) -> None:
    result = profile.profile_corpus(minilm, TEXT, "toy.txt", n_windows=3, length=24).to_json()
    experiment_id = Store(db_path).save_experiment("profile", result, "test", 1.0)
    app = open_page(EXPERIMENTS, finding=str(experiment_id))
    assert_clean(app)
    text = page_text(app)
    assert f"Experiment {experiment_id} · profile" in text
    assert result["together"]["sentence"].split(":")[0][:30] in text
    specs = chart_specs(app)
    profile_spec = next(spec for spec, _ in specs if "Layer profile" in str(spec.get("title", "")))
    assert len(profile_spec["vconcat"]) == 4
    assert load_calls == []  # showing a stored result loads no model


def test_run_the_profile_from_the_page(db_path: Path, tmp_path: Path, minilm: sinkfix.LoadedModel,
                                       load_calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_DATA_DIRS", str(tmp_path))  # the file is in a data folder (docs/security.md)
    corpus = tmp_path / "toy.txt"
    corpus.write_text(TEXT)
    app = open_page(EXPERIMENTS)
    app.selectbox(key="profile_model").select("minilm")
    app.text_input(key="profile_file").set_value(str(corpus))
    app.number_input(key="profile_windows").set_value(3)
    app.number_input(key="profile_length").set_value(24)
    app = app.button(key="profile_run").click().run()
    assert_clean(app)
    rows = Store(db_path).experiments(kind="profile")
    assert len(rows) == 1
    stored = Store(db_path).experiment(rows[0]["id"])["result"]
    expected = profile.profile_corpus(minilm, TEXT, "toy.txt", n_windows=3, length=24).to_json()
    assert stored["n_texts"] == 3 and stored["source"] == "toy.txt"
    for mine, theirs in zip(stored["layers"], expected["layers"]):
        for metric in profile.METRICS:
            assert mine[metric]["mean"] == pytest.approx(theirs[metric]["mean"], rel=1e-6)


def test_stored_lengths_bos_and_secondary_open(db_path: Path, tiny_llama: sinkfix.LoadedModel,
                                               load_calls: list[str]) -> None:
    store = Store(db_path)
    made = {
        "lengths": lengths.length_sweep(tiny_llama, TEXT, "toy", lengths=[8, 16, 32], n_windows=3),
        "bos": bos_ablation.bos_ablation(tiny_llama, TEXT, "toy", lengths=(8, 16), n_windows=3),
        "secondary": secondary.secondary_sinks(tiny_llama, TEXT, "toy", n_windows=2, length=32, epsilon=0.1,
                                               share=0.25, min_queries=4),
    }
    for kind, result in made.items():
        experiment_id = store.save_experiment(kind, result.to_json(), kind, result.headline())
        app = open_page(EXPERIMENTS, finding=str(experiment_id))
        assert_clean(app)
        assert f"Experiment {experiment_id} · {kind}" in page_text(app)
        assert chart_specs(app), f"no chart for {kind}"
    assert load_calls == []
    app = open_page(EXPERIMENTS)
    listed = app.dataframe[-1].value
    assert sorted(listed["kind"]) == ["bos", "lengths", "secondary"]


def test_bad_deep_links_are_error_boxes(db_path: Path, load_calls: list[str]) -> None:
    for value, message in (("abc", "not an experiment id"), ("999", "no stored finding experiment")):
        app = open_page(EXPERIMENTS, finding=value)
        assert not app.exception
        assert any(message in e.value for e in app.error)


def test_stored_findings_render_in_a_notebook_with_the_pages_charts(minilm: sinkfix.LoadedModel,
                                                                    tiny_llama: sinkfix.LoadedModel) -> None:
    from sinkfix.plots import lengths as length_charts
    from sinkfix.plots import profile as profile_charts
    from sinkfix.plots import secondary as secondary_charts
    from sinkfix.store.results import StoredResult

    made = {
        "profile": profile.profile_corpus(minilm, TEXT, "<toy>", n_windows=2, length=16).to_json(),
        "lengths": lengths.length_sweep(tiny_llama, TEXT, "toy", lengths=[8, 16], n_windows=2).to_json(),
        "bos": bos_ablation.bos_ablation(tiny_llama, TEXT, "toy", lengths=(8, 16), n_windows=2).to_json(),
        "secondary": secondary.secondary_sinks(tiny_llama, TEXT, "toy", n_windows=2, length=32, epsilon=0.1,
                                               share=0.25, min_queries=4).to_json(),
    }
    same = {("profile", "profile"): profile_charts.profile_chart(made["profile"]),
            ("lengths", "lengths"): length_charts.lengths_chart(made["lengths"]),
            ("bos", "bos"): length_charts.bos_chart(made["bos"]),
            ("secondary", "layers"): secondary_charts.layers_chart(made["secondary"]),
            ("secondary", "prediction"): secondary_charts.prediction_chart(made["secondary"])}
    for (kind, method), expected in same.items():
        row = StoredResult({"id": 4, "kind": kind, "model": "m", "label": "<i>x</i>", "headline": 1.0,
                            "created_at": "2025-01-01T00:00:00+00:00", "result": made[kind]})
        assert getattr(row.plot, method)().to_dict() == expected.to_dict(), (kind, method)
        html = row._repr_html_()
        assert f".plot.{method}()" in html and "<i>" not in html and "<toy>" not in html, kind
