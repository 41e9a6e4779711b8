"""``sinkfix evict``: the JSON shape the issue names, progress per prompt, the stored experiment, errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sinkfix.cli.main import main
from sinkfix.store import Store


def test_evict_prints_the_json_and_stores_the_sweep(tiny_model_dirs, db_path: Path, capsys) -> None:
    argv = ["evict", "--model", str(tiny_model_dirs["llama"]), "--lengths", "80", "--depths", "0.3,0.7",
            "--seeds", "1", "--press", "streaming,h2o", "--ratio", "0.5", "--json", "-"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert set(data["results"]) == {"streaming", "h2o"} and set(data["results"]["h2o"]) == {"0.5"}
    cell = data["results"]["h2o"]["0.5"]["first:4"]
    assert set(cell) >= {"accuracy", "nll_delta", "token0_kept", "protected"}
    assert set(cell["accuracy"]) >= {"mean", "ci95"} and set(cell["nll_delta"]) == {"mean", "ci95"}
    assert cell["token0_kept"] == 1.0 and cell["protected"] == 4.0
    assert set(data["paired"]["streaming"]["0.5"]) == {"first:4-none", "detected-none", "detected-first:4"}
    assert len(data["prompts"]) == 2 and data["prompts"][0]["context"]
    assert "prompt 1/2" in err and "prompt 2/2" in err
    stored = Store(db_path).experiment(data["id"])
    assert stored["kind"] == "evict" and stored["result"]["results"] == data["results"]


@pytest.mark.parametrize("flag, value, message", [("--press", "h2o,nope", "unknown press"),
                                                  ("--ratio", "1.0", "fraction of keys removed"),
                                                  ("--protect", "sinks", "none, first:N or detected")])
def test_evict_refuses_bad_settings_in_one_line(flag: str, value: str, message: str, capsys) -> None:
    assert main(["evict", flag, value, "--no-save"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
