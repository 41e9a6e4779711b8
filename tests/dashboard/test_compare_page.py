"""Compare: ?runs=ID1,ID2 shows both runs, says when token lists differ, and diffs heads of one model."""
from __future__ import annotations

import json

import numpy as np
import pytest

import sinkfix
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import assert_clean, open_page, page_text

COMPARE = "views/compare.py"


def test_compare_without_runs_asks_for_them(run_ids: dict[str, int]) -> None:
    app = open_page(COMPARE)
    assert_clean(app)
    assert "at least two run ids" in page_text(app)


def test_compare_link_shows_both_runs(run_ids: dict[str, int], seed_analyses) -> None:
    first, second = run_ids["seed"], run_ids["cat"]
    app = open_page(COMPARE, runs=f"{first},{second}")
    assert_clean(app)
    overview = app.dataframe[0].value
    assert list(overview["run"]) == [first, second]
    assert list(overview["tokens"]) == [15, 9]
    assert "The token lists differ" in page_text(app)  # different texts: aligned by position, and said so
    # Sinks table: every non-neutral token of both runs, with its label.
    sinks = app.dataframe[1].value
    for name, run_id in (("seed", first), ("cat", second)):
        analysis = seed_analyses[name]
        flagged = {i for i, label in enumerate(analysis.labels) if label != "neutral"}
        listed = sinks[sinks["run"] == run_id]
        assert flagged <= set(listed["index"])
        assert list(listed["label"]) == [analysis.labels[i] for i in listed["index"]]
    # One difference grid (same model), whose values are the stored per-head differences.
    specs = [json.loads(e.proto.spec) for e in app.get("vega_lite_chart")]
    assert any(f"run {second} − run {first}" in json.dumps(s.get("title", ""), ensure_ascii=False) for s in specs)


def test_same_text_gives_no_token_warning(db_path, minilm: sinkfix.LoadedModel, load_calls) -> None:
    store = Store(db_path)
    text = "Attention sinks soak up attention."
    a = store.save(sinkfix.analyze(text, minilm), viewer=LOCAL)
    b = store.save(sinkfix.analyze(text, minilm, sinkfix.AnalysisSettings(tau_att=0.03)), viewer=LOCAL)
    app = open_page(COMPARE, runs=f"{a},{b}")
    assert_clean(app)
    assert "same" in page_text(app) and "The token lists differ" not in page_text(app)
    assert np.isfinite(app.dataframe[0].value["tokens"]).all()


def test_compare_errors_are_error_boxes(run_ids: dict[str, int]) -> None:
    app = open_page(COMPARE, runs=f"{run_ids['seed']},999")
    assert not app.exception and "no run with id 999" in app.error[0].value
    app = open_page(COMPARE, runs="1,2,3,4,5")
    assert not app.exception and "2 to 4 runs" in app.error[0].value


def test_same_text_on_two_models(db_path, minilm: sinkfix.LoadedModel, smollm2: sinkfix.LoadedModel,
                                 load_calls) -> None:
    store = Store(db_path)
    text = "The cat sat on the mat."
    a, b = store.save(sinkfix.analyze(text, minilm), viewer=LOCAL), store.save(sinkfix.analyze(text, smollm2), viewer=LOCAL)
    app = open_page(COMPARE, runs=f"{a},{b}")
    assert_clean(app)
    assert list(app.dataframe[0].value["model"]) == ["minilm", "smollm2-135m"]
    text_shown = page_text(app)
    assert "The token lists differ" in text_shown  # WordPiece vs byte-level BPE
    assert "Per-head differences need runs of the same model" in text_shown


def _aligned(app, field: str = "att_received"):
    return next(d.value for d in app.dataframe if "word" in d.value.columns)


def test_two_tokenizers_line_up_by_words(db_path, minilm: sinkfix.LoadedModel, smollm2: sinkfix.LoadedModel,
                                        load_calls) -> None:
    store = Store(db_path)
    text = "The cat's mat."
    bert, smol = sinkfix.analyze(text, minilm), sinkfix.analyze(text, smollm2)
    a, b = store.save(bert, viewer=LOCAL), store.save(smol, viewer=LOCAL)
    app = open_page(COMPARE, runs=f"{a},{b}")
    assert_clean(app)
    table = _aligned(app)
    words = [w.split(" ", 1)[1] for w in table["word"]]
    assert words == ["[CLS]", "The", "cat's", "mat.", "[SEP]"]  # specials are their own rows
    assert list(table["kind"]) == ["special", "word", "word", "word", "special"]
    # Each word's att_received is the sum over the tokens whose characters it holds, per run.
    spans = {"The": (0, 3), "cat's": (4, 9), "mat.": (10, 14)}
    for analysis, run in ((bert, a), (smol, b)):
        column = table[f"run {run} · {analysis.model_name}: att_received"]
        by_word: dict[str, float] = {}
        for (start, end), value in zip(analysis.offsets, analysis.att_received):
            if end > start:  # the word holding the token's first non-space character
                first = start + len(text[start:end]) - len(text[start:end].lstrip())
                word = next(w for w, (ws, we) in spans.items() if ws <= first < we)
                by_word[word] = by_word.get(word, 0.0) + float(value)
        assert [pytest.approx(by_word[w], abs=1e-6) for w in spans] == list(column[1:4])
    assert np.isnan(table[f"run {b} · smollm2-135m: att_received"].iloc[0])  # SmolLM2 has no [CLS]
    # Tokens are shown in the one display: SmolLM2's Ġcat is ␣cat.
    assert "␣" in " ".join(table[f"run {b} · smollm2-135m: tokens"].dropna())


def test_runs_without_stored_offsets_are_retokenized(db_path, minilm: sinkfix.LoadedModel, load_calls) -> None:
    import dataclasses

    store = Store(db_path)
    text = "Sinks soak up attention."
    a = store.save(dataclasses.replace(sinkfix.analyze(text, minilm), offsets=None), viewer=LOCAL)
    b = store.save(dataclasses.replace(sinkfix.analyze(text, minilm, sinkfix.AnalysisSettings(tau_att=0.03)),
                                       offsets=None), viewer=LOCAL)
    assert Store(db_path).get(a, viewer=LOCAL).offsets is None
    app = open_page(COMPARE, runs=f"{a},{b}")
    assert_clean(app)
    assert [w.split(" ", 1)[1] for w in _aligned(app)["word"]] == ["[CLS]", "Sinks", "soak", "up", "attention.", "[SEP]"]


def test_runs_that_cannot_be_aligned_say_so(db_path, minilm: sinkfix.LoadedModel, load_calls) -> None:
    import dataclasses

    store = Store(db_path)
    text = "Sinks soak up attention."
    lost = dataclasses.replace(sinkfix.analyze(text, minilm), offsets=None, model_id="/nowhere/model")
    a, b = store.save(lost, viewer=LOCAL), store.save(sinkfix.analyze(text, minilm), viewer=LOCAL)
    app = open_page(COMPARE, runs=f"{a},{b}")
    assert_clean(app)
    assert f"Run(s) {a} carry no token spans" in page_text(app)


def test_depth_curves_put_both_models_on_one_relative_axis(db_path, minilm, smollm2, load_calls) -> None:
    from .conftest import chart_specs

    store = Store(db_path)
    text = "The cat sat on the mat."
    bert, smol = sinkfix.analyze(text, minilm), sinkfix.analyze(text, smollm2)
    a, b = store.save(bert, viewer=LOCAL), store.save(smol, viewer=LOCAL)
    app = open_page(COMPARE, runs=f"{a},{b}")
    assert_clean(app)
    spec, data = next((s, d) for s, d in chart_specs(app) if "relative depth" in json.dumps(s, ensure_ascii=False))
    frame = next(iter(data.values()))
    for analysis, run in ((bert, a), (smol, b)):
        rows = frame[frame["run"] == f"run {run} · {analysis.model_name}"].sort_values("layer")
        L = analysis.n_layers
        assert np.allclose(rows["depth"], np.arange(L) / (L - 1))
        assert np.allclose(rows["token0_share"], analysis.att_received_layer[:, 0], atol=1e-6)
        heads_sinking = [(analysis.alpha[l].max(axis=1) > analysis.settings.epsilon).mean() for l in range(L)]
        assert np.allclose(rows["sink_rate"], heads_sinking)
