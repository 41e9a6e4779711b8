"""Evaluations and calibrations in the run database (schema step m004): additive, listed, replaced by name."""
import pytest

from sinkfix.experiments import calibrate
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import schema as store_module
from sinkfix.errors import SettingsError
from sinkfix.experiments.intervene import Intervention
from sinkfix.store import Store


def test_evaluations_are_stored_and_listed(db_path):
    store = Store(db_path)
    assert "m004_evaluations" in [step.__name__ for step in store_module.STEPS]
    result = {"model": "smollm2-135m", "target": "first", "beta": 0.4, "heads": [[2, 1]], "baseline_nll": 3.0,
              "intervened_nll": 3.1, "delta_nll": 0.1, "delta_nll_ci95": [0.05, 0.15]}
    first = store.save_evaluation("evaluate", result, run_id=7, viewer=LOCAL)
    second = store.save_evaluation("sts", {"model": "minilm", "target": "random", "beta": 0.0, "heads": None,
                                           "baseline_spearman": 0.82, "intervened_spearman": 0.8,
                                           "delta_spearman": -0.02, "delta_ci95": [-0.03, -0.01]}, viewer=LOCAL)
    rows = store.evaluations(viewer=LOCAL)
    assert [r["id"] for r in rows] == [second, first]
    assert rows[1]["heads"] == [[2, 1]] and rows[1]["result"] == result and rows[1]["ci_low"] == 0.05
    assert rows[0]["baseline"] == 0.82 and rows[0]["delta"] == -0.02
    assert [r["id"] for r in store.evaluations(run_id=7, viewer=LOCAL)] == [first]
    assert [r["id"] for r in store.evaluations(model="minilm", viewer=LOCAL)] == [second]


def test_calibrations_by_name(db_path):
    cal = calibrate.Calibration("minilm", "sts", "spearman", Intervention(beta=0.0), ((0, 1), (3, 2)), [], 0.8, 30, 40,
                                {"target": {"delta_spearman": 0.01}})
    calibrate.save(cal, "pair", viewer=LOCAL)
    assert calibrate.load("pair", viewer=LOCAL)["kept_heads"] == [[0, 1], [3, 2]]
    assert calibrate.resolve_heads("@pair", "minilm", viewer=LOCAL) == ((0, 1), (3, 2))
    calibrate.save(calibrate.Calibration("minilm", "sts", "spearman", Intervention(), ((5, 5),), [], 0.8, 30, 40), "pair", viewer=LOCAL)
    listed = calibrate.stored(viewer=LOCAL)
    assert len(listed) == 1 and listed[0]["kept_heads"] == [[5, 5]] and listed[0]["heldout_delta"] is None
    assert calibrate.stored(viewer=LOCAL)[0]["name"] == "pair" and calibrate.stored("smollm2-135m", viewer=LOCAL) == []
    with pytest.raises(SettingsError, match="made for minilm"):
        calibrate.resolve_heads("@pair", "smollm2-135m", viewer=LOCAL)
    with pytest.raises(SettingsError, match="stored: pair"):
        calibrate.load("other", viewer=LOCAL)
    with pytest.raises(SettingsError, match="must be letters"):
        calibrate.save(cal, "../escape", viewer=LOCAL)
    assert calibrate.resolve_heads("1:2", None, viewer=LOCAL) == ((1, 2),) and calibrate.resolve_heads(None, viewer=LOCAL) is None
