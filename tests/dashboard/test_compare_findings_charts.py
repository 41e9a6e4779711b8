"""Pure builders for Compare (word alignment, relative depth) and Findings (forest plots)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dashboard import links
from sinkfix.plots import compare as compare_charts, findings as findings_charts
from sinkfix.analysis.align import align

from ..synthetic import synthetic_analysis


def test_depth_frame_scales_layers_to_zero_one() -> None:
    six = dataclasses.replace(synthetic_analysis(n_layers=6, n_heads=2, n_tokens=4), run_id=1)
    three = dataclasses.replace(synthetic_analysis(n_layers=3, n_heads=2, n_tokens=4, seed=1), run_id=2)
    frame = compare_charts.depth_frame([six, three])
    assert frame[frame["run"].str.startswith("run 1")]["depth"].tolist() == pytest.approx([0, .2, .4, .6, .8, 1])
    assert frame[frame["run"].str.startswith("run 2")]["depth"].tolist() == pytest.approx([0, .5, 1])
    assert frame["token0_share"].tolist()[:6] == pytest.approx(six.att_received_layer[:, 0].tolist())
    chart = compare_charts.depth_curves(frame).to_dict()
    assert chart["hconcat"][0]["encoding"]["x"]["scale"]["domain"] == [0, 1]


def test_aligned_frame_combines_tokens_per_word() -> None:
    a = synthetic_analysis(n_layers=2, n_heads=2, n_tokens=4, text="ab cd")
    a = dataclasses.replace(a, run_id=1, tokens=["[CLS]", "ab", "cd", "[SEP]"], offsets=[(0, 0), (0, 2), (3, 5), (0, 0)])
    b = synthetic_analysis(n_layers=2, n_heads=2, n_tokens=3, text="ab cd", seed=2)
    b = dataclasses.replace(b, run_id=2, tokens=["a", "b", "Ġcd"], offsets=[(0, 1), (1, 2), (2, 5)])
    alignment = align("ab cd", [a.offsets, b.offsets], [a.tokens, b.tokens])
    frame = compare_charts.aligned_frame([a, b], alignment)
    ab_b = frame[(frame["word"] == "1 ab") & (frame["run"].str.startswith("run 2"))].iloc[0]
    assert ab_b["att_received"] == pytest.approx(float(b.att_received[0] + b.att_received[1]))
    assert ab_b["value_norm"] == pytest.approx(float(max(b.value_norm[0], b.value_norm[1])))
    assert ab_b["tokens"] == "a b"
    assert frame[frame["word"] == "2 cd"]["tokens"].tolist() == ["cd", "␣cd"]
    table = compare_charts.aligned_table(frame, "att_received")
    assert list(table["word"]) == ["0 [CLS]", "1 ab", "2 cd", "3 [SEP]"]
    assert np.isnan(table["run 2 · synthetic: att_received"].iloc[0])


EVALUATION = {"id": 4, "kind": "evaluate", "model": "m", "result": {
    "target": "detrimental", "beta": 0.4, "delta_nll": 0.1, "delta_nll_ci95": [0.05, 0.15],
    "sweep": [{"arm": "target", "beta": 0.4, "delta_nll": 0.1, "delta_nll_ci95": [0.05, 0.15]},
              {"arm": "random", "beta": 0.4, "delta_nll": 0.02, "delta_nll_ci95": [0.0, 0.04]},
              {"arm": "first", "beta": 0.4, "delta_nll": 0.3, "delta_nll_ci95": [0.2, 0.4]},
              {"arm": "first", "beta": 0.0, "delta_nll": 0.9, "delta_nll_ci95": [0.8, 1.0]}]}}


def test_findings_frame_takes_each_arm_at_the_evaluations_beta() -> None:
    no_lm = {"id": 5, "kind": "evaluate", "model": "minilm", "result": {"target": "first", "beta": 0.0,
                                                                        "delta_nll": None, "cosine_mean": 0.9}}
    calibration = {"name": "c", "model": "m", "intervention": {"target": "first", "beta": 0.0}, "kept_heads": [[0, 1]],
                   "heldout": {"target": {"delta_spearman": 0.01, "delta_ci95": [0.0, 0.02]}}}
    frame = findings_charts.findings_frame([EVALUATION, no_lm], [calibration])
    rows = {(r.source, r.arm): (r.delta, r.low, r.high) for r in frame.itertuples()}
    assert rows == {("evaluation", "target: detrimental"): (0.1, 0.05, 0.15),
                    ("evaluation", "random (control)"): (0.02, 0.0, 0.04),
                    ("evaluation", "token 0 (control)"): (0.3, 0.2, 0.4),
                    ("calibration", "target: first"): (0.01, 0.0, 0.02)}
    spec = findings_charts.forest_plot(frame).to_dict()
    assert len(spec["vconcat"]) == 2  # NLL and Spearman have their own axes


def test_evaluation_links_parse() -> None:
    assert links.parse_evaluation_id("12") == 12 and links.parse_evaluation_id("") is None
    with pytest.raises(links.LinkError):
        links.parse_evaluation_id("0")
    assert links.url(links.EVALUATE, {"evaluation": "3"}) == "evaluate?evaluation=3"


def test_findings_use_the_sweeps_strongest_beta_when_it_skipped_the_evaluations_own() -> None:
    sweep = [{"arm": a, "beta": b, "delta_nll": d, "delta_nll_ci95": [d - 0.1, d + 0.1]}
             for a, b, d in (("target", 1.0, 0.0), ("target", 0.0, 0.6), ("random", 1.0, 0.0), ("random", 0.0, 0.2))]
    row = {"id": 9, "kind": "evaluate", "model": "m",
           "result": {"target": "first", "beta": 0.4, "delta_nll": 0.3, "delta_nll_ci95": [0.1, 0.5], "sweep": sweep}}
    frame = findings_charts.findings_frame([row], [])
    assert sorted(zip(frame["arm"], frame["delta"], frame["beta"])) == [
        ("random (control)", 0.2, 0.0), ("target: first", 0.6, 0.0)]
    assert frame["study"].iloc[0] == "evaluation 9 · m · first, β=0"
