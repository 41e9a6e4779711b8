"""Drill-down of a hybrid run (issue 24): the model's own layer numbers, its non-attention layers marked,
and the attention output gate beside each head's first-token mass (tiny Qwen3-Next, attention in 1 and 3)."""
from __future__ import annotations

from pathlib import Path

import pytest

import sinkfix
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from .conftest import assert_clean, chart_specs, open_page, page_text

DRILLDOWN = "views/drilldown.py"


@pytest.fixture()
def hybrid_run(db_path: Path, hybrid_models: dict[str, sinkfix.LoadedModel]) -> tuple[int, sinkfix.Analysis]:
    analysis = sinkfix.analyze("the cat sat on the mat . hello world", hybrid_models["qwen3_next"])
    store = Store(db_path)
    run_id = store.save(analysis, viewer=LOCAL)
    store.close()
    return run_id, analysis


def test_hybrid_drilldown_shows_model_layer_numbers_and_gates(hybrid_run) -> None:
    run_id, analysis = hybrid_run
    app = open_page(DRILLDOWN, run=str(run_id), layer="3", head="1")
    assert_clean(app)
    picker = app.selectbox(key="layer")
    assert list(picker.options) == ["1", "3"] and picker.value == 3
    text = page_text(app)
    assert "Attention in layers 1, 3 of 0..3. Layers 0, 2 mix tokens without softmax attention" in text
    assert "4 layers × 4 heads (2 KV heads) · attention in layers 1, 3 · value-norm layer 3" in text
    assert "Layer 3, head 1: attention map" in text
    summary = next(t.value for t in app.table if "quantity" in t.value.columns)
    lines = dict(zip(summary["quantity"], summary["value"]))
    assert lines["output gate (mean sigmoid)"] == f"{analysis.attention_gate[1, 1]:.3f}"
    assert list(summary["quantity"]).index("output gate (mean sigmoid)") == list(summary["quantity"]).index("token-0 share") + 1
    # The layer-by-layer curve keeps the model's axis (0..3) and marks layers 0 and 2 as not attention;
    # the head grid's rows are the attention layers, under their model numbers.
    frames = [frame for _, data in chart_specs(app) for frame in data.values() if "layer" in frame]
    assert any(sorted(set(f["layer"])) == [1, 3] and "att_received" in f for f in frames)
    assert any(sorted(set(f["layer"])) == [0, 2] and "kind" in f for f in frames)
    assert any(sorted(set(f["layer"])) == [1, 3] and "head" in f for f in frames)

def test_a_link_to_a_layer_without_attention_is_an_error_not_layer_0(hybrid_run) -> None:
    run_id, _ = hybrid_run
    app = open_page(DRILLDOWN, run=str(run_id), layer="2", head="0")
    assert not app.exception
    assert any("layer 2 is not an attention layer" in e.value for e in app.error)


def test_depth_curves_place_a_hybrids_points_at_model_layers_and_mark_the_others() -> None:
    import dataclasses

    from sinkfix.plots import compare as compare_charts

    from ..synthetic import synthetic_analysis

    hybrid = dataclasses.replace(synthetic_analysis(n_layers=2, n_heads=2, n_tokens=4), run_id=1, n_layers=4,
                                 attention_layers=[1, 3])
    frame = compare_charts.depth_frame([hybrid])
    attending = frame[frame["attention"]]
    assert attending["layer"].tolist() == [1, 3] and attending["depth"].tolist() == pytest.approx([1 / 3, 1])
    assert attending["token0_share"].tolist() == pytest.approx(hybrid.att_received_layer[:, 0].tolist())
    marked = frame[~frame["attention"]]
    assert marked["layer"].tolist() == [0, 2] and marked["token0_share"].isna().all()
    panel = compare_charts.depth_curves(frame).to_dict()["hconcat"][0]
    assert [layer["mark"]["type"] for layer in panel["layer"]] == ["line", "tick"]
