"""The notebook accessors draw the dashboard's charts: each ``.plot`` chart equals, spec and data, a chart
the page draws for the same stored run or evaluation (read back from an AppTest run of the page)."""
from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest

import sinkfix
from sinkfix.errors import MissingExtraError, SettingsError
from sinkfix.store import Store
from tests.synthetic import synthetic_analysis

from .conftest import assert_clean, chart_specs, open_page
from .test_evaluate_page import STORED

DROP = {"config", "autosize", "$schema", "usermeta", "datasets"}


def _normal(spec: dict, data: dict[str, list]) -> object:
    """A spec with its named datasets inlined and floats rounded; Altair's generated view names dropped."""
    def walk(x: object) -> object:
        if isinstance(x, dict):
            if set(x) == {"name"} and x["name"] in data:
                return {"values": walk(data[x["name"]])}
            return {k: walk(v) for k, v in x.items() if k not in DROP and not (k == "name" and str(v).startswith("view_"))
                    and k != "views"}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return round(x, 5) if isinstance(x, float) else x
    return walk(spec)


def _page_charts(app) -> list:
    return [_normal(spec, {name: json.loads(frame.to_json(orient="records")) for name, frame in data.items()})
            for spec, data in chart_specs(app)]


def _mine(chart) -> object:
    spec = json.loads(chart.to_json())
    return _normal(spec, spec.get("datasets", {}))


def test_an_analysis_draws_the_analyze_and_drilldown_pages_charts(db_path, run_ids: dict[str, int]) -> None:
    run_id = run_ids["cat"]  # loose thresholds: two detrimental sinks, so the change charts have work to do
    analysis = Store(db_path).get(run_id)
    analyze = open_page("views/analyze.py", run=str(run_id))
    drill = open_page("views/drilldown.py", run=str(run_id), layer="2", head="5")
    assert_clean(analyze) and assert_clean(drill)
    pages = _page_charts(analyze) + _page_charts(drill)
    pages += _page_charts(analyze.radio(key="an_grid_mode").set_value("α of each head's top sink").run())
    p = analysis.plot
    drawn = {"tokens": p.tokens(), "received": p.received(), "value_norms": p.value_norms(), "plane": p.plane(),
             "heads": p.heads(), "heads(token)": p.heads(token=int(np.argmax(analysis.sink_rate))),
             "mean_map": p.mean_map(), "change": p.change(), "grid": p.grid("top_alpha", 2, 5),
             "map": p.map(2, 5), "head change": p.change(2, 5), "layers": p.layers(),
             "value_norm_layers": p.value_norm_layers(), "value_norm_heads": p.value_norm_heads(2)}
    for name, chart in drawn.items():
        assert _mine(chart) in pages, f"{name}() is not a chart the pages draw"
    # The page's map is the stored head map, so this is the independent check on the numbers.
    original, _ = Store(db_path).head_map(run_id, 2, 5)
    panels = [sorted(v["attention"] for v in d) for d in json.loads(p.map(2, 5).to_json())["datasets"].values()
              if "attention" in d[0]]
    assert any(panel == pytest.approx(np.sort(original.ravel()).tolist(), abs=1e-6) for panel in panels)


def test_a_stored_evaluation_draws_the_evaluate_pages_charts(db_path, load_calls) -> None:
    store = Store(db_path)
    evaluation = store.evaluation(store.save_evaluation("evaluate", STORED))
    app = open_page("views/evaluate.py", evaluation=str(evaluation["id"]))
    assert_clean(app)
    pages = _page_charts(app)
    p = evaluation.plot
    for name, chart in {"sweep": p.sweep(), "kl": p.kl(), "evidence": p.evidence(), "forest": p.forest()}.items():
        assert _mine(chart) in pages, f"{name}() is not a chart the Evaluate page draws"
    html = evaluation._repr_html_()
    assert "Evaluation 1" in html and "+0.5000 nats [+0.2000, +0.8000]" in html and "75.0 %" in html


def test_charts_a_result_cannot_have_are_errors_that_say_why() -> None:
    analysis = synthetic_analysis()
    with pytest.raises(SettingsError, match="no attention output gates"):
        analysis.plot.gates()
    with pytest.raises(SettingsError, match="token must be a whole number from 0 to 5"):
        analysis.plot.heads(token=6)
    with pytest.raises(SettingsError, match="metric must be one of"):
        analysis.plot.grid("nope")
    with pytest.raises(SettingsError, match="no learned sink logits"):
        analysis.plot.learned_sink()
    with pytest.raises(SettingsError, match="kept no attention maps"):
        synthetic_analysis(keep_maps=False).plot.map(0, 0)
    with pytest.raises(SettingsError, match="layer must be a whole number from 0 to 1, got 5"):
        analysis.plot.map(5, 0)
    row = {"id": 2, "kind": "evaluate", "model": "m", "result": {"model": "m", "baseline_nll": None}}
    with pytest.raises(SettingsError, match="ran no β sweep"):
        sinkfix.store.results.StoredResult(row).plot.sweep()


def test_gates_draw_each_heads_mean_gate() -> None:
    base = synthetic_analysis(n_layers=2, n_heads=3)
    gate = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    chart = dataclasses.replace(base, attention_gate=gate).plot.gates()
    cells = next(d for d in json.loads(chart.to_json())["datasets"].values() if "gate" in d[0])
    assert [(c["layer"], c["head"], c["gate"]) for c in cells] == [
        (layer, head, pytest.approx(float(gate[layer, head]))) for layer in range(2) for head in range(3)]


def test_without_altair_plot_names_the_viz_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "altair", None)  # import altair now raises ImportError
    monkeypatch.delitem(sys.modules, "sinkfix.notebook.plots")
    with pytest.raises(MissingExtraError, match=r'need altair, which is not installed here: pip install "sinkfix\[viz\]"'):
        synthetic_analysis().plot
    assert 'class="sinkfix-analysis"' in synthetic_analysis()._repr_html_()  # the summary needs no altair


def test_frames_hold_the_tables_with_nan_for_what_a_model_lacks(db_path, seed_analyses) -> None:
    analysis = seed_analyses["cat"]
    tokens = analysis.frame("tokens")
    assert list(tokens.columns) == ["index", "token", "shown", "att_received", "value_norm", "sink_rate", "label"]
    assert tokens.drop(columns="shown").to_dict("records") == analysis.token_table()
    assert tokens["att_received"].sum() == pytest.approx(1.0, abs=1e-5)
    heads = analysis.frame("heads")
    assert len(heads) == analysis.n_layers * analysis.n_heads and heads["gate"].isna().all()
    assert heads["top_alpha"].tolist() == pytest.approx(analysis.alpha.max(axis=2).ravel().tolist())
    with pytest.raises(SettingsError, match="frame must be one of tokens, heads"):
        analysis.frame("layers")
    store = Store(db_path)
    for a in seed_analyses.values():
        store.save(a)
    for filters in ({}, {"model": "minilm", "label": "detrimental"}, {"text_contains": "cat", "limit": 1}):
        frame = store.frame(**filters)
        rows = store.list(**filters)
        assert frame["id"].tolist() == [r["id"] for r in rows] and frame["text"].tolist() == [r["text"] for r in rows]
        assert str(frame["created_at"].dtype).startswith("datetime64") and str(frame["created_at"].dt.tz) == "UTC"
    assert store.frame(model="nobody").empty and "n_tokens" in store.frame(model="nobody").columns


def _experiments() -> dict[str, dict]:
    from sinkfix.experiments import sinkrate
    from sinkfix.experiments.lab.summary import summarise

    from .test_lab_charts import _run

    curve = {"ppl_ci95": [8.0, 10.0], "curve": [2.0, 4.0, 6.0], "delta_nll": 0.6}
    return {
        "lab": summarise([_run("softmax", 0, 1.0), _run("softmax", 1, 1.0),
                          _run("sinklogit", 0, 0.5, {"learned_sink_mass": 0.4})], ["softmax", "sinklogit"]),
        "streaming": {"model": "m", "mode": "stream", "window": 4, "n_tokens": 20, "scored_from": 4,
                      "trained_positions": 10, "dense_ppl": 5.0, "dense_curve": [1.0, 2.0, 3.0],
                      "settings": [{"name": "s0", "sinks": 0, "pos_shift": True, "ppl": 9.0, **curve},
                                   {"name": "s4", "sinks": 4, "pos_shift": True, "ppl": 6.0, **curve}]},
        "kvquant": {"model": "m", "dense_ppl": 3.0, "n_chunks": 2, "max_tokens": 64, "group": 32, "settings": [
            {"name": "int4, first 0 kept", "bits": 4, "keep": 0, "delta_nll": 0.2, "delta_nll_ci95": [0.1, 0.3],
             "ppl": 3.5}]},
        "sinkrate": {"model": "m", "epsilon": 0.3, "length": 64, "n": 8, "paper": sinkrate.PAPER,
                     "kinds": {k: {"rate": 0.5, "ci95": [0.4, 0.6], "per_layer": [0.4, 0.5]} for k in sinkrate.KINDS}},
        "massive": {"model": "m", "tokens": ["<s>", "<b>x"], "peak": [[1.0, 2.0], [3000.0, 4.0]],
                    "top": {"max_abs": 3000.0, "ratio": 1500.0, "layer": 1, "dim": 7, "token": 0, "token_text": "<s>"},
                    "first_massive_layer": 1,
                    "top_features": [{"layer": 1, "token": 0, "token_text": "<b>x", "dim": 7, "value": -3000.0,
                                      "max_abs": 3000.0}],
                    "intervention": {"arms": {"zero": {"delta_nll": 2.0, "ci95": [1.0, 3.0]}}, "n_chunks": 1, "layer": 1}},
    }


def test_every_stored_kind_renders_and_draws_the_charts_its_page_draws() -> None:
    from sinkfix.plots import lab, longcontext, mechanisms
    from sinkfix.store.results import StoredResult

    results = _experiments()
    same = {  # (kind, accessor call) -> the builder call its section makes
        ("lab", "curves"): lab.training_curves(results["lab"], "first_token_mass"),
        ("lab", "final"): lab.final_bars(results["lab"]),
        ("lab", "sinks"): lab.sink_share_bars(results["lab"]),
        ("streaming", "curves"): longcontext.curve_chart(results["streaming"]),
        ("streaming", "sinks"): longcontext.sinks_chart(results["streaming"]),
        ("kvquant", "deltas"): longcontext.quant_chart(results["kvquant"]),
        ("sinkrate", "bars"): mechanisms.sinkrate_bars(results["sinkrate"]),
        ("sinkrate", "layers"): mechanisms.sinkrate_layers(results["sinkrate"]),
        ("massive", "peak"): mechanisms.peak_heatmap(results["massive"]["peak"], results["massive"]["tokens"]),
        ("massive", "features"): mechanisms.top_features(results["massive"]["top_features"]),
        ("massive", "intervention"): mechanisms.intervention_bars(results["massive"]["intervention"]),
    }
    for (kind, method), expected in same.items():
        row = StoredResult({"id": 5, "kind": kind, "model": "m", "label": "<i>x</i>", "headline": 1.0,
                            "created_at": "2025-01-01T00:00:00+00:00", "result": results[kind]})
        assert getattr(row.plot, method)().to_dict() == expected.to_dict(), (kind, method)
        html = row._repr_html_()
        assert f".plot.{method}()" in html and "<i>" not in html and "<b>x" not in html, kind
