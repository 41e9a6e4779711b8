"""Issue 22's chart defects, checked on the pure builders (no browser). Where the defect was visual
(bars not drawn, names cut, labels piled up), the chart is rendered to SVG by vl-convert, the same
renderer as the PNG/SVG downloads, and the drawn marks are read back."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from dashboard import units
from sinkfix.plots import analysis as charts, compare as compare_charts, longcontext as longcontext_charts, mechanisms as mechanism_charts, plane as plane_chart
from dashboard.ui import chart_bytes

FEATURES = [{"layer": 11, "token": 0, "token_text": "The", "dim": 1415, "max_abs": 2543.2, "value": -2543.2,
             "ratio": 4100.0},
            {"layer": 11, "token": 0, "token_text": "The", "dim": 2870, "max_abs": 812.0, "value": 812.0, "ratio": 1300.0},
            {"layer": 14, "token": 1024, "token_text": "Ġneighbourhood", "dim": 33, "max_abs": 3.5, "value": 3.5,
             "ratio": 5.0}]


def svg_of(chart) -> str:
    return chart_bytes(chart, "svg").decode()


def bar_widths(svg: str) -> list[float]:
    """Widths of the rect marks Vega drew as SVG paths ("M x,y h WIDTH v ...")."""
    marks = re.findall(r'<g class="mark-rect role-mark[^"]*"[^>]*>(.*?)</g>', svg, flags=re.S)
    return [float(w) for group in marks for w in re.findall(r'd="M[-\d.e]+,[-\d.e]+h([-\d.e]+)', group)]


def test_top_features_draws_a_bar_per_feature_with_whole_names() -> None:
    """Bars on a log axis drew nothing (no zero to start from) and names were cut before the dim."""
    chart = mechanism_charts.top_features(FEATURES)
    spec = chart.to_dict()
    bars = spec["layer"][0]
    low = spec["datasets"][spec["data"]["name"] if "data" in spec else bars["data"]["name"]][0]["low"]
    assert bars["encoding"]["x2"]["field"] == "low" and bars["encoding"]["x"]["scale"]["type"] == "log"
    assert 0 < low <= min(f["max_abs"] for f in FEATURES)  # every bar starts below its value
    svg = svg_of(chart)
    widths = bar_widths(svg)
    assert len(widths) == len(FEATURES) and all(w > 1 for w in widths)
    assert widths[0] > widths[1] > widths[2]  # longer for larger |h|, as the values say
    labels = re.findall(r"<text[^>]*>([^<]*dim[^<]*)</text>", svg)
    assert "L11 · #0 The · dim 1415" in labels and any(label.endswith("· dim 33") for label in labels)
    assert not any(label.endswith("…") for label in labels)  # Vega cuts a label that is too long with …


def test_classification_plane_names_never_overlap() -> None:
    """Issue 22: "7 tail", "11 river", "14 [SEP]" drawn on top of each other."""
    positions = ["0 [CLS]", "7 tail", "11 river", "14 [SEP]", "3 fox", "9 bank"]
    frame = pd.DataFrame({"index": [0, 7, 11, 14, 3, 9], "token": positions, "position": positions,
                          "att_received": [0.30, 0.050, 0.051, 0.052, 0.049, 0.0505],
                          "value_norm": [0.2, 0.50, 0.51, 0.49, 0.505, 0.495],
                          "label": ["beneficial", *["detrimental"] * 5], "sink_rate": [1.0, 0, 0, 0, 0, 0]})
    layout = plane_chart.label_layout(frame, 0.04)
    assert sorted(layout["position"]) == sorted(positions)
    boxes = layout[["x0", "y0", "x1", "y1"]].to_numpy()
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (layout.iloc[i],
                                                                                             layout.iloc[j])
    assert layout["moved"].any()  # crowded names were moved off their points (with a leader line)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    att = rng.dirichlet(np.ones(n))
    return charts.token_frame([f"w{i}" for i in range(n)], ["neutral"] * n, att, rng.uniform(size=n))


def test_compare_bars_give_a_short_run_its_own_width() -> None:
    """15 vs 366 tokens: the short run was drawn about 30 px wide with its labels piled up."""
    spec = charts.compare_bars([("run 1", _frame(15, 0)), ("run 2", _frame(366, 1))]).to_dict()
    short, long = (panel["width"]["step"] for panel in spec["vconcat"])
    assert short * 15 >= 400 and short >= 14  # a readable label per bar
    assert long * 366 <= 1100
    assert "own width" in spec["title"]["text"] if isinstance(spec["title"], dict) else "own width" in spec["title"]
    same = charts.compare_bars([("a", _frame(20, 0)), ("b", _frame(20, 1))]).to_dict()
    assert len({p["width"]["step"] for p in same["vconcat"]}) == 1  # equal lengths still line up


def _stream(mode: str = "masked", n_positions: int = 300, block: int = 256, trained: int = 8192) -> dict:
    settings = [{"name": f"window+{k} sinks" if k else "window", "sinks": k, "pos_shift": None, "ppl": 20.0 - k,
                 "ppl_ci95": [18.0 - k, 22.0 - k], "curve": [3.0] * 10} for k in (0, 1, 4)]
    return {"model": "m", "mode": mode, "window": 16, "n_tokens": n_positions + 17, "scored_from": 16,
            "n_positions": n_positions, "ci_unit": f"block of {block} positions", "trained_positions": trained,
            "dense_ppl": 15.0, "dense_curve": [2.8] * 10, "settings": settings}


def test_sinks_chart_has_one_axis_title_no_stray_legend_and_flat_ticks() -> None:
    result = _stream()
    spec = longcontext_charts.sinks_chart(result).to_dict()
    titles = {layer["encoding"]["y"].get("title") for layer in spec["layer"]}
    assert titles == {"perplexity (log scale)"}  # was "perplexity (log scale), low"
    assert all("color" not in layer["encoding"] for layer in spec["layer"])  # no "pos_shift –" legend
    assert spec["layer"][0]["encoding"]["x"]["axis"]["labelAngle"] == 0
    svg = svg_of(longcontext_charts.sinks_chart(result))
    assert "perplexity (log scale), low" not in svg and "pos_shift" not in svg


def test_long_context_captions_name_only_what_is_drawn_and_flag_few_units() -> None:
    short = _stream(n_positions=300, trained=8192)  # 2 blocks of 256 positions; text within the trained length
    assert "Dashed line: the end" not in longcontext_charts.curve_caption(short)
    assert longcontext_charts.ci_units(short) == 2
    assert "only 2 bootstrap units" in longcontext_charts.rough_ci_note(short)
    long = _stream(n_positions=4000, trained=1024)
    assert "Dashed line: the end of the model's trained positions (1024)" in longcontext_charts.curve_caption(long)
    assert longcontext_charts.rough_ci_note(long) is None  # 16 blocks


def test_legend_titles_are_words_not_field_names() -> None:
    grid = charts.head_grid(charts.head_frame(np.ones((2, 2)), "token0_share"), "token0_share", "t").to_dict()
    assert grid["encoding"]["color"]["title"] == "token-0 share"
    assert charts.title_of("Δ top_alpha") == "Δ α of the top sink"


def test_depth_caption_names_the_runs_own_layer_counts(seed_like_runs) -> None:
    six, thirty, also_thirty = seed_like_runs
    assert "6-layer and 30-layer" in compare_charts.depth_caption([six, thirty])
    caption = compare_charts.depth_caption([thirty, also_thirty])
    assert "30 layers" in caption and "6-layer" not in caption


@pytest.fixture()
def seed_like_runs():
    from types import SimpleNamespace

    return SimpleNamespace(n_layers=6), SimpleNamespace(n_layers=30), SimpleNamespace(n_layers=30)


def test_units_convention() -> None:
    assert units.ppl(95.912) == "95.91" and units.nats(0.01234) == "+0.0123 nats"
    assert units.ratio(4123.4) == "4,123×" and units.percent(0.4512) == "45.1 %"
    assert units.plural(1, "chunk") == "1 chunk" and units.plural(3, "chunk") == "3 chunks"
    assert units.when("2026-11-29T22:31:52+00:00") == "2026-11-29 22:31 UTC" and units.when(None) == "—"
    assert units.number(None) == "—" and units.interval(None, 1.0) == "—"
    assert units.headline("sinkrate", 0.5) == "Sink₁ 50.0 %" and units.headline("kvquant", 0.02) == \
        "largest ΔNLL +0.0200 nats"
    assert units.headline("streaming", None) == "—"


def test_a_long_head_map_is_one_image_whose_dark_column_is_the_sink() -> None:
    """At 256 tokens three maps were ~200k SVG rectangles per head change; now each is one PNG."""
    import base64
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(256, 256))
    logits[:, 7] += 6.0  # key 7 is the sink
    maps = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    spec = charts.attention_map(maps, [f"t{i}" for i in range(256)], "m").to_dict()
    image = spec["layer"][0]
    assert image["mark"]["type"] == "image"
    url = spec["datasets"][image["data"]["name"]][0]["url"]
    picture = np.asarray(Image.open(BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L"), dtype=float)
    assert picture.shape == (256, 256)
    assert int(picture.mean(axis=0).argmin()) == int(maps.mean(axis=0).argmax()) == 7  # darkest = most attended
    small = charts.attention_map(maps[:10, :10], [f"t{i}" for i in range(10)], "m").to_dict()
    assert small["mark"]["type"] == "rect"  # short maps keep their token labels and hover
