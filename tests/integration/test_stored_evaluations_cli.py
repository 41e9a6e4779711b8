"""Stored evaluations and calibrations are listed from the command line, beside the runs."""
import json

from sinkfix.cli import main
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store


def test_evaluations_and_calibrations_are_listed(db_path, capsys):
    store = Store(db_path)
    evaluation = {"model": "smollm2-135m", "target": "first", "beta": 0.4, "heads": None,
                  "baseline_nll": 4.0, "intervened_nll": 4.2, "delta_nll": 0.2, "delta_nll_ci95": [0.1, 0.3]}
    evaluation_id = store.save_evaluation("evaluate", evaluation, viewer=LOCAL)
    store.save_calibration("smol-test", {"model": "smollm2-135m", "task": "nll", "metric": "nll",
                                         "kept_heads": [[1, 2], [3, 4]], "dev_baseline": 4.01,
                                         "heldout": {"target": {"delta_nll": -0.005}}}, viewer=LOCAL)

    assert main(["evaluations", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [evaluation_id]
    assert rows[0]["delta"] == 0.2 and rows[0]["ci_low"] == 0.1 and rows[0]["result"]["target"] == "first"

    assert main(["evaluations"]) == 0
    table = capsys.readouterr().out
    assert "first" in table and "+0.1000, +0.3000" in table

    assert main(["calibrations", "--json"]) == 0
    calibrations = json.loads(capsys.readouterr().out)
    assert calibrations[0]["name"] == "smol-test" and calibrations[0]["kept_heads"] == [[1, 2], [3, 4]]
    assert main(["calibrations", "--model", "minilm"]) == 0
    assert "smol-test" not in capsys.readouterr().out
