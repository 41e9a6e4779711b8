"""The 2025 findings' chart builders on hand-made results: every plotted mean and CI comes from the result,
panels share one axis, missing intervals draw no band, undefined precisions draw no bar."""
from __future__ import annotations

import pandas as pd
import pytest

from sinkfix.experiments.profile import together
from sinkfix.plots import lengths as length_charts
from sinkfix.plots import profile as profile_charts
from sinkfix.plots import secondary as secondary_charts


def e(mean: float, width: float | None = 0.1, n: int = 4) -> dict:
    return {"mean": mean, "ci95": None if width is None else [mean - width, mean + width], "n": n}


def profile_result(n_layers: int = 6) -> dict:
    layers = []
    for layer in range(n_layers):
        spike = layer >= 3
        layers.append({"layer": layer, "token0_norm": e(1000.0 if spike else 10.0, 5.0),
                       "median_norm": e(10.0 + layer, 1.0), "sink_rate": e(0.9 if spike else 0.1, 0.05),
                       "token0_alpha": e(0.6 if spike else 0.1), "repr_entropy": e(1.0 if spike else 3.0, None)})
    return {"kind": "profile", "model": "m", "n_texts": 4, "layers": layers, "together": together(layers)}


def test_profile_frame_holds_every_mean_and_interval() -> None:
    result = profile_result()
    frame = profile_charts.profile_frame(result)
    assert len(frame) == 6 * 5  # five series over four panels
    token0 = frame[frame["series"] == "token 0"].sort_values("x")
    assert token0["mean"].tolist() == [r["token0_norm"]["mean"] for r in result["layers"]]
    assert token0["low"].tolist() == [r["token0_norm"]["ci95"][0] for r in result["layers"]]
    assert frame[frame["series"] == "entropy"]["low"].isna().all()  # no CI given: no band


def test_profile_chart_stacks_four_panels_on_one_layer_axis() -> None:
    result = profile_result()
    assert result["together"]["spans"] == [[3, 3]]
    spec = profile_charts.profile_chart(result).to_dict()
    assert len(spec["vconcat"]) == 4 and spec["resolve"]["scale"]["x"] == "shared"
    assert "n = 4 texts" in spec["title"] and "95% CI" in spec["title"]
    titles = [str(panel) for panel in spec["vconcat"]]
    assert all("rect" in t for t in titles)  # the shared-change layers are shaded in every panel
    assert sum("output of decoder layer" in t for t in titles) == 1  # one labelled axis, at the bottom


def test_profile_chart_of_one_text_draws_lines_without_bands() -> None:
    result = profile_result()
    for row in result["layers"]:
        for key in ("token0_norm", "median_norm", "sink_rate", "token0_alpha", "repr_entropy"):
            row[key] = e(row[key]["mean"], None, 1)
    result["n_texts"] = 1
    frame = profile_charts.profile_frame(result)
    assert frame["low"].isna().all()
    assert "n = 1 text ·" in profile_charts.profile_chart(result).to_dict()["title"]


def lengths_result() -> dict:
    rows = [{"length": t, "sink_rate": e(0.8 - i * 0.1), "first_token_mass": e(0.5 - i * 0.05),
             "late_first_token_mass": e(0.4 - i * 0.05), "token0_norm": e(100.0, 0.0), "token0_norm_ratio": e(20.0 + i)}
            for i, t in enumerate((64, 128, 256))]
    return {"kind": "lengths", "model": "m", "n_windows": 4, "lengths": rows}


def test_lengths_chart_uses_a_log2_length_axis() -> None:
    result = lengths_result()
    frame = length_charts.lengths_frame(result)
    late = frame[frame["series"] == "second half of queries"]
    assert late["mean"].tolist() == pytest.approx([0.4, 0.35, 0.3])
    spec = length_charts.lengths_chart(result).to_dict()
    assert len(spec["vconcat"]) == 3 and "n = 4 windows" in spec["title"]
    assert '"base": 2' in str(spec).replace("'", '"') and "[64, 128, 256]" in str(spec)


def test_bos_frame_and_chart() -> None:
    arms = ("no_bos", "bos")
    rows = [{"length": t, "arms": {a: {"nll": e(4.0 + k * 0.1), "sink_rate": e(0.5)} for k, a in enumerate(arms)},
             "comparisons": {"bos - no_bos": {"delta_nll": e(0.1, 0.05), "delta_nll_late": e(0.2, 0.05),
                                              "delta_sink_rate": e(0.0)}}}
            for t in (64, 256)]
    result = {"kind": "bos", "model": "m", "n_windows": 8, "arms": list(arms), "lengths": rows}
    frame = length_charts.bos_frame(result)
    delta = frame[frame["panel"] == "ΔNLL, paired (nats/token)"]
    assert delta["mean"].tolist() == [0.1, 0.1] and delta["low"].tolist() == pytest.approx([0.05, 0.05])
    assert set(frame[frame["panel"] == "NLL (nats/token)"]["series"]) == set(arms)
    late = frame[frame["panel"] == "ΔNLL, second half of positions"]
    assert late["mean"].tolist() == [0.2, 0.2]
    spec = length_charts.bos_chart(result).to_dict()
    assert len(spec["vconcat"]) == 4 and "n = 8 windows" in spec["title"]


def test_secondary_prediction_frame_leaves_undefined_precision_out() -> None:
    undefined = {"value": None, "ci95": None, "hits": 0, "total": 0}
    recall = {"value": 0.0, "ci95": [0.0, 0.0], "hits": 0, "total": 5}
    looser = {"value": 0.3, "ci95": [0.2, 0.4], "hits": 5, "total": 17}
    result = {"n_windows": 4, "sinks": [{}] * 5, "by_layer": [0, 2, 3],
              "predictor": {"precision": undefined, "recall": recall},
              "ladder": [{"ratio": 1000.0, "precision": undefined, "recall": recall},
                         {"ratio": 300.0, "precision": looser, "recall": {**looser, "value": 1.0, "ci95": [1.0, 1.0]}}]}
    frame = secondary_charts.prediction_frame(result)
    assert frame["predictor"].tolist() == ["massive (Sun et al.)"] * 2 + ["peak ≥ 300× median"] * 2
    assert pd.isna(frame.iloc[0]["value"]) and frame.iloc[2]["value"] == 0.3
    assert "isValid(datum.value)" in str(secondary_charts.prediction_chart(result).to_dict())
    layers = secondary_charts.layers_frame(result)
    assert layers["sinks"].tolist() == [0, 2, 3]
    assert "5 sinks" in secondary_charts.layers_chart(result).to_dict()["title"]
