"""The Evaluate page's chart builders: the data each chart carries is the data it was given, and each renders."""
from __future__ import annotations

import pandas as pd
import pytest

from dashboard import ui
from sinkfix.plots import evaluation as eval_charts

POINTS = [
    {"arm": "target", "target": "first", "beta": 1.0, "intervened_nll": 3.0, "delta_nll": 0.0,
     "delta_nll_ci95": [0.0, 0.0], "kl_mean": 0.0, "top1_agreement": 1.0, "cosine_mean": 1.0},
    {"arm": "target", "target": "first", "beta": 0.0, "intervened_nll": 3.5, "delta_nll": 0.5,
     "delta_nll_ci95": [0.2, 0.9], "kl_mean": 0.7, "top1_agreement": 0.6, "cosine_mean": 0.9},
    {"arm": "random", "target": "random", "beta": 1.0, "intervened_nll": 3.0, "delta_nll": 0.0,
     "delta_nll_ci95": [0.0, 0.0], "kl_mean": 0.0, "top1_agreement": 1.0, "cosine_mean": 1.0},
    {"arm": "random", "target": "random", "beta": 0.0, "intervened_nll": 4.0, "delta_nll": 1.0,
     "delta_nll_ci95": [0.5, 1.4], "kl_mean": 2.0, "top1_agreement": 0.3, "cosine_mean": 0.5},
]
NO_LM = [{**p, "intervened_nll": None, "delta_nll": None, "delta_nll_ci95": None, "kl_mean": None,
          "top1_agreement": None} for p in POINTS]
TOKENS = ["The", "<script>", "Ġcat", "Ġsat"]
EVIDENCE = pd.DataFrame([
    {"index": 0, "token": "The", "att_received": 0.6, "value_norm": 0.3, "seed_label": "beneficial",
     "evidence_label": "beneficial", "delta_nll": 0.6, "kl_mean": 0.5, "top1_agreement": 0.6, "cosine_mean": 0.9},
    {"index": 1, "token": "<script>", "att_received": 0.1, "value_norm": 0.9, "seed_label": "neutral",
     "evidence_label": "detrimental", "delta_nll": -0.1, "kl_mean": 0.05, "top1_agreement": 1.0, "cosine_mean": 0.99},
])


def test_sweep_frame_puts_the_ci_on_the_curve() -> None:
    frame = eval_charts.sweep_frame(POINTS)
    row = frame[(frame["arm"] == "random (control)") & (frame["beta"] == 0.0)].iloc[0]
    # baseline = 4.0 - 1.0 = 3.0, so the band is 3.0 + [0.5, 1.4]
    assert (row["nll"], row["nll_low"], row["nll_high"]) == pytest.approx((4.0, 3.5, 4.4))
    assert set(frame["arm"]) == {"target: first", "random (control)"}
    assert eval_charts.sweep_frame(NO_LM)["nll_low"].isna().all()


def test_sweep_chart_shows_nll_and_kl_against_a_reversed_beta_axis() -> None:
    chart = eval_charts.sweep_chart(eval_charts.sweep_frame(POINTS), has_lm=True)
    nll, kl = chart.hconcat
    spec = nll.to_dict()
    band, line, rule = spec["layer"]
    assert line["encoding"]["x"]["scale"]["domain"] == [1, 0]  # β = 1 (no change) on the left
    assert band["mark"]["type"] == "area" and band["encoding"]["y2"]["field"] == "nll_high"
    assert spec["datasets"][rule["data"]["name"]][0]["y"] == 3.0  # the baseline is the β = 1 NLL
    assert kl.to_dict()["layer"][0]["encoding"]["y"]["field"] == "kl"
    cosine = eval_charts.sweep_chart(eval_charts.sweep_frame(NO_LM), has_lm=False)
    assert cosine.to_dict()["layer"][0]["encoding"]["y"]["field"] == "cosine"


def test_position_chart_marks_targets_and_the_chosen_position() -> None:
    chart = eval_charts.position_chart(TOKENS, [0, 1, 2], [0.0, 2.5, 0.3], "KL", "t", targets=[0], selected=1)
    bars, triangles, outline = chart.layer
    assert bars.data["KL"].tolist() == [0.0, 2.5, 0.3]
    assert bars.data["role"].tolist() == ["redistributed (target)", "other token", "other token"]
    assert bars.data["position"].tolist() == ["0 The", "1 <script>", "2 ␣cat"]
    assert triangles.data["index"].tolist() == [0]  # a target is marked even where its bar is 0
    assert outline.data["index"].tolist() == [1]


def test_predictions_share_one_probability_scale() -> None:
    before, after = [("Ġa", 0.75), ("Ġthe", 0.18)], [("Ġa", 0.45), ("Ġthe", 0.38)]
    frame = eval_charts.predictions_frame(before, after)
    assert frame.to_dict("records")[0] == {"rank": 1, "before": "␣a", "p_before": 0.75, "after": "␣a", "p_after": 0.45}
    left, right = eval_charts.predictions_chart(before, after, "t").hconcat
    assert left.to_dict()["encoding"]["x"]["scale"]["domain"] == right.to_dict()["encoding"]["x"]["scale"]["domain"]
    assert right.data["probability"].tolist() == [0.45, 0.38]


def test_evidence_chart_uses_the_nll_change_or_the_cosine_drift() -> None:
    with_lm = eval_charts.evidence_chart(EVIDENCE, has_lm=True)
    bars = with_lm.layer[0]
    assert bars.to_dict()["encoding"]["color"]["field"] == "evidence_label"
    assert bars.data["delta_nll"].tolist() == [0.6, -0.1]
    without = eval_charts.evidence_chart(EVIDENCE, has_lm=False).layer[0]
    assert without.data["cosine_drop"].tolist() == pytest.approx([0.1, 0.01])
    assert without.to_dict()["encoding"]["color"]["field"] == "seed_label"


def test_every_evaluate_chart_renders_with_escaped_tokens() -> None:
    built = [
        eval_charts.sweep_chart(eval_charts.sweep_frame(POINTS), True),
        eval_charts.sweep_chart(eval_charts.sweep_frame(NO_LM), False),
        eval_charts.position_chart(TOKENS, [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4], "cosine", "t", [1], None),
        eval_charts.predictions_chart([("<script>", 0.5)], [("<b>", 0.4)], "t"),
        eval_charts.evidence_chart(EVIDENCE, True),
    ]
    for chart in built:
        assert ui.chart_bytes(chart, "png").startswith(b"\x89PNG")
    svg = ui.chart_bytes(built[4], "svg").decode()
    assert "&lt;script&gt;" in svg and "<script>" not in svg
