"""The lab's chart builders: frames checked against numbers computed here, specs against their encodings."""
from __future__ import annotations

import numpy as np
import pytest

from sinkfix.plots import lab as lab_charts
from sinkfix.experiments.lab.summary import SUMMARY_METRICS, summarise


def _run(variant: str, seed: int, scale: float, extra: dict | None = None) -> dict:
    checkpoints = []
    for step in (0, 10, 20):
        row = {name: scale * (1 + seed) * (step + 1) / 100 for name in SUMMARY_METRICS}
        row.update(extra or {})
        checkpoints.append({"step": step, **row})
    return {"variant": variant, "seed": seed, "task": {"task": "backcopy"}, "steps": 20, "seconds": 1.0,
            "device": "cpu", "model_dir": f"/m/{variant}{seed}", "checkpoints": checkpoints, "final": checkpoints[-1]}


@pytest.fixture()
def result() -> dict:
    runs = [_run("softmax", 0, 1.0), _run("softmax", 1, 1.0), _run("sinklogit", 0, 0.5, {"learned_sink_mass": 0.4}),
            _run("sinklogit", 1, 0.5, {"learned_sink_mass": 0.6}),
            _run("registers", 0, 0.2, {"register_share": 0.7, "first_content_mass": 0.1})]
    return summarise(runs, ["softmax", "sinklogit", "registers"])


def test_curve_frame_is_the_mean_and_range_over_seeds(result: dict) -> None:
    frame = lab_charts.curve_frame(result, "sink_rate")
    row = frame[(frame["variant"] == "softmax") & (frame["step"] == 10)].iloc[0]
    values = [1.0 * 1 * 11 / 100, 1.0 * 2 * 11 / 100]
    assert row["mean"] == pytest.approx(np.mean(values))
    assert (row["low"], row["high"], row["seeds"]) == (pytest.approx(min(values)), pytest.approx(max(values)), 2)
    assert list(frame[frame["variant"] == "registers"]["seeds"]) == [1, 1, 1]
    assert lab_charts.curve_frame(result, "learned_sink_mass")["variant"].unique().tolist() == ["sinklogit"]


def test_final_frame_sits_beside_the_papers_claims(result: dict) -> None:
    frame = lab_charts.final_frame(result)
    assert list(frame["variant"]) == ["softmax", "sinklogit", "registers"]
    softmax = frame.iloc[0]
    assert softmax["first-token mass"] == pytest.approx(np.mean([0.21, 0.42]))
    assert softmax["Sink₁ %"] == pytest.approx(100 * np.mean([0.21, 0.42]))  # a rate, in %
    low, high = result["variants"]["softmax"]["sink_rate"]["ci95"]
    assert softmax["Sink₁ % CI"] == f"[{100 * low:.3f}, {100 * high:.3f}]"
    assert "Gu et al." in softmax["source"] and "sink" in softmax["papers' claim"]


def test_sink_share_frame_shows_learned_sinks_and_registers(result: dict) -> None:
    frame = lab_charts.sink_share_frame(result)
    sink = frame[(frame["variant"] == "sinklogit") & (frame["where"] == lab_charts.METRICS["learned_sink_mass"])].iloc[0]
    assert (sink["mean"], sink["low"], sink["high"]) == (pytest.approx(0.5), pytest.approx(0.4), pytest.approx(0.6))
    wheres = set(frame[frame["variant"] == "registers"]["where"])
    assert wheres == {lab_charts.METRICS[n] for n in ("register_share", "first_token_mass", "first_content_mass")}
    assert set(frame[frame["variant"] == "softmax"]["where"]) == {lab_charts.METRICS["first_token_mass"]}


def test_chart_specs_encode_the_frames(result: dict) -> None:
    curves = lab_charts.training_curves(result, "first_token_mass").to_dict()
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in curves["layer"]]
    assert marks == ["area", "line"]
    assert curves["layer"][0]["encoding"]["y2"]["field"] == "high"
    assert curves["layer"][1]["encoding"]["color"]["sort"] == ["softmax", "sinklogit", "registers"]
    bars = lab_charts.final_bars(result, "sink_rate").to_dict()
    assert bars["layer"][1]["encoding"]["y2"]["field"] == "high"
    shares = lab_charts.sink_share_bars(result).to_dict()
    assert shares["layer"][0]["encoding"]["xOffset"]["field"] == "where"
