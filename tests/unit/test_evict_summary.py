"""The sweep's statistics against hand-worked values: Wilson intervals, paired differences, the JSON tables."""
from __future__ import annotations

import pytest

from sinkfix.experiments.evict import summary
from sinkfix.experiments.evict.protect import Protection
from sinkfix.errors import SettingsError


def test_wilson_intervals_by_hand() -> None:
    # z = 1.96: 0/10 -> [0, z^2 / (n + z^2)] = [0, 0.2775]; 10/10 mirrors it; 5/10 -> 0.5 -+ 0.2633 (Wilson 1927).
    assert summary.wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert summary.wilson(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert summary.wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)


def _row(correct: bool, nll: float) -> dict:
    return {"correct": correct, "nll": nll, "token0_kept": 1.0, "protected": 4.0, "kept_share": 0.5}


def test_tables_and_paired_differences() -> None:
    prompts = []
    for i in range(4):
        outcomes = {"h2o": {"0.5": {"none": _row(i < 1, 2.0), "first:4": _row(i < 3, 1.0), "detected": _row(i < 3, 1.5)}}}
        prompts.append({"dense": _row(True, 0.5), "outcomes": outcomes})
    results, paired, dense = summary.tables(prompts, ["h2o"], [0.5], ["none", "first:4", "detected"])
    cell = results["h2o"]["0.5"]["first:4"]
    assert cell["accuracy"]["mean"] == 0.75 and cell["accuracy"]["ci95"] == list(summary.wilson(3, 4))
    assert cell["nll_delta"]["mean"] == pytest.approx(0.5)
    pairs = paired["h2o"]["0.5"]
    assert list(pairs) == ["first:4-none", "detected-none", "detected-first:4"]
    assert pairs["first:4-none"]["mean"] == pytest.approx(0.5) and pairs["first:4-none"]["n"] == 4
    assert pairs["detected-first:4"]["mean"] == 0.0 and pairs["detected-first:4"]["ci95"] == [0.0, 0.0]
    low, high = pairs["first:4-none"]["ci95"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    assert dense["accuracy"]["mean"] == 1.0


def test_nll_tasks_pair_the_nll() -> None:
    rows = [{"dense": {**_row(True, 1.0), "correct": None},
             "outcomes": {"knorm": {"0.5": {"none": {**_row(True, 1.5), "correct": None},
                                            "first:4": {**_row(True, 1.2), "correct": None}}}}}]
    results, paired, _ = summary.tables(rows, ["knorm"], [0.5], ["none", "first:4"])
    assert results["knorm"]["0.5"]["none"]["accuracy"] is None
    assert paired["knorm"]["0.5"]["first:4-none"]["mean"] == pytest.approx(-0.3)


def test_protection_names() -> None:
    assert Protection.parse("first:4").name == "first:4" and Protection.parse(" detected ").name == "detected"
    for bad in ("first:", "first:x", "first:0", "sinks", ""):
        with pytest.raises(SettingsError):
            Protection.parse(bad)
