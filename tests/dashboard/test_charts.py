"""The pure chart builders: the data each chart carries is the data it was given, and every chart renders."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard import ui
from sinkfix.plots import analysis as charts

TOKENS = ["[CLS]", "<script>", "[MASK]", "[MASK]", "a-very-long-token-indeed", "[SEP]"]
LABELS = ["beneficial", "neutral", "detrimental", "neutral", "neutral", "detrimental"]
ATT = np.array([0.5, 0.05, 0.2, 0.05, 0.05, 0.15])
NORM = np.array([0.1, 1.0, 0.3, 0.8, 0.9, 0.2])


@pytest.fixture()
def frame() -> pd.DataFrame:
    return charts.token_frame(TOKENS, LABELS, ATT, NORM, sink_rate=np.linspace(0, 1, 6))


def test_token_axis_labels_keep_repeated_tokens_apart_and_short() -> None:
    labels = charts.token_axis_labels(TOKENS)
    assert labels[2] != labels[3] and labels[2] == "2 [MASK]"
    assert labels[4] == "4 a-very-long…" and len(labels) == len(set(labels))


def test_token_frame_holds_the_values(frame: pd.DataFrame) -> None:
    assert list(frame["token"]) == TOKENS and list(frame["label"]) == LABELS
    assert np.array_equal(frame["att_received"], ATT) and np.array_equal(frame["value_norm"], NORM)


def test_token_strip_wraps_rows_and_colours_by_label() -> None:
    chart = charts.token_strip(TOKENS * 5, LABELS * 5, per_row=7)
    data = chart.data if isinstance(chart.data, pd.DataFrame) else chart.layer[0].data
    assert list(data["row"]) == [i // 7 for i in range(30)] and list(data["column"]) == [i % 7 for i in range(30)]
    spec = chart.to_dict()
    color = spec["layer"][0]["encoding"]["color"]["scale"]
    assert color == {"domain": list(charts.LABELS), "range": list(charts.LABEL_COLORS)}


def test_token_bars_draw_the_threshold(frame: pd.DataFrame) -> None:
    spec = charts.token_bars(frame, "att_received", "t", threshold=0.1, threshold_label="τ_att").to_dict()
    rule = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "rule")
    rule_data = spec["datasets"][rule["data"]["name"]]
    assert rule_data == [{"y": 0.1, "what": "τ_att"}]
    assert spec["layer"][0]["encoding"]["x"]["sort"] == charts.token_axis_labels(TOKENS)


def test_classification_plane_marks_the_detrimental_region(frame: pd.DataFrame) -> None:
    chart = charts.classification_plane(frame, tau_att=0.12, tau_norm=0.4)
    region, v_rule, h_rule, _leaders, _points, *names = chart.layer
    assert region.data.iloc[0][["x", "y", "y2"]].tolist() == [0.12, 0.0, 0.4]
    assert region.data.iloc[0]["x2"] >= ATT.max()  # the shaded corner reaches past every point
    assert v_rule.data["value"].tolist() == [0.12] and h_rule.data["value"].tolist() == [0.4]
    spec = chart.to_dict()
    tooltip_fields = {t["field"] for t in spec["layer"][4]["encoding"]["tooltip"]}
    assert {"token", "label", "att_received", "value_norm", "sink_rate"} <= tooltip_fields
    assert all(layer["encoding"]["text"]["field"] == "position" for layer in spec["layer"][5:])
    named = sorted(p for n in names for p in n.data["position"])
    assert named == sorted(charts.label_layout(frame, 0.12)["position"])  # every labelled point is named


def test_head_grid_carries_the_values_and_a_click_selection() -> None:
    values = np.arange(12, dtype=float).reshape(3, 4) / 12
    chart = charts.head_grid(charts.head_frame(values, "alpha"), "alpha", "t", selectable=True, selected=(1, 2))
    grid = chart.layer[0]
    rebuilt = np.zeros((3, 4))
    for row in grid.data.itertuples():
        rebuilt[row.layer, row.head] = row.alpha
    assert np.array_equal(rebuilt, values)
    params = chart.to_dict()["params"]
    assert params[0]["name"] == "cell" and params[0]["select"]["fields"] == ["layer", "head"]
    assert chart.layer[1].data.to_dict("records") == [{"layer": 1, "head": 2}]  # the selected-cell ring


def test_difference_grid_is_other_minus_base() -> None:
    base = np.array([[0.1, 0.2], [0.3, 0.4]])
    other = np.array([[0.4, 0.2], [0.0, 0.5]])
    chart = charts.difference_grid(base, other, "top_alpha", "t")
    diff = chart.data.pivot(index="layer", columns="head", values="Δ top_alpha").to_numpy()
    assert np.allclose(diff, other - base)
    assert chart.to_dict()["encoding"]["color"]["scale"]["domain"] == pytest.approx([-0.3, 0.3])


def test_attention_pair_shares_one_colour_scale() -> None:
    rng = np.random.default_rng(0)
    original = rng.dirichlet(np.ones(6), size=6)
    corrected = original * 0.5
    pair = charts.attention_pair(original, corrected, TOKENS, "t")
    left, right = pair.hconcat
    labels = charts.token_axis_labels(TOKENS)
    cell = left.data[(left.data["query"] == labels[3]) & (left.data["key"] == labels[1])]
    assert cell["attention"].item() == pytest.approx(original[3, 1])
    top = float(original.max())
    assert left.to_dict()["encoding"]["color"]["scale"]["domain"] == [0, top]
    assert right.to_dict()["encoding"]["color"]["scale"]["domain"] == [0, top]


def test_layer_curves_keep_the_top_tokens() -> None:
    per_layer = np.array([[0.5, 0.1, 0.3, 0.1], [0.6, 0.05, 0.3, 0.05]])
    chart = charts.layer_curves(per_layer, ["a", "b", "c", "d"], top=2)
    assert sorted(set(chart.data["token"])) == ["0 a", "2 c"]
    assert chart.data[chart.data["token"] == "2 c"]["att_received"].tolist() == [0.3, 0.3]


def test_compare_bars_use_the_same_width_per_position(frame: pd.DataFrame) -> None:
    chart = charts.compare_bars([("run 1", frame), ("run 2", frame.iloc[:3])])
    steps = [view.to_dict()["width"] for view in chart.vconcat]
    assert steps[0] == steps[1] and "step" in steps[0]


def test_every_chart_renders_to_png_and_svg_with_escaped_tokens(frame: pd.DataFrame) -> None:
    maps = np.full((6, 6), 1 / 6)
    built = [
        charts.token_strip(TOKENS, LABELS),
        charts.token_bars(frame, "value_norm", "t", 0.5),
        charts.classification_plane(frame, 0.1, 0.5),
        charts.head_grid(charts.head_frame(np.eye(3), "alpha"), "alpha", "t", selectable=True),
        charts.attention_pair(maps, maps, TOKENS, "t"),
        charts.layer_curves(np.tile(ATT, (3, 1)), TOKENS),
        charts.token_heatmap(np.tile(NORM, (3, 1)), TOKENS, "layer", "value_norm", "t"),
        charts.compare_bars([("a", frame), ("b", frame)]),
    ]
    for chart in built:
        assert ui.chart_bytes(chart, "png").startswith(b"\x89PNG")
    svg = ui.chart_bytes(built[0], "svg").decode()
    assert svg.startswith("<svg") and "&lt;script&gt;" in svg and "<script>" not in svg
