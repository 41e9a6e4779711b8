"""``python -m sinkfix streaming | kvquant`` on a tiny LLaMA: JSON, the stored experiment, one-line errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import sinkfix
from sinkfix.cli.main import main
from sinkfix.experiments import perplexity, streaming
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

TEXT = " ".join(["the cat sat on the mat and the dog was in the sun ."] * 12)


@pytest.fixture()
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return path


def test_streaming_masked_json_and_store(tiny_model_dirs, text_file, db_path, capsys) -> None:
    model = str(tiny_model_dirs["llama"])
    assert main(["streaming", "--model", model, "--text-file", str(text_file), "--window", "16", "--sinks", "0,2",
                 "--tokens", "120", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "masked" and data["n_positions"] == 120 - 1 - 16
    loaded = sinkfix.load_model(model)
    ids = perplexity.text_ids(loaded, TEXT, 120)
    expected = streaming.window_nll(loaded, ids, 16, 2)[16:]
    row = data["settings"][1]
    assert row["sinks"] == 2 and row["nll"] == pytest.approx(float(np.mean(expected)), abs=1e-6)
    assert row["ppl"] == pytest.approx(math.exp(row["nll"]))
    assert data["dense_ppl"] == pytest.approx(math.exp(np.mean(perplexity.sequence_nll(loaded, ids)[16:])), rel=1e-6)
    stored = Store(db_path).experiment(data["id"], viewer=LOCAL)
    assert stored["kind"] == "streaming" and stored["result"]["settings"][1]["nll"] == row["nll"]


def test_streaming_stream_mode_reports_both_pos_shifts(tiny_model_dirs, text_file, db_path, capsys) -> None:
    assert main(["streaming", "--model", str(tiny_model_dirs["llama"]), "--text-file", str(text_file), "--mode",
                 "stream", "--window", "16", "--sinks", "2", "--tokens", "60", "--json", "-", "--no-save"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["pos_shift"] for r in data["settings"]] == [True, False]
    assert all(len(r["curve"]) == data["n_positions"] for r in data["settings"])


def test_kvquant_json(tiny_model_dirs, text_file, db_path, capsys) -> None:
    assert main(["kvquant", "--model", str(tiny_model_dirs["llama"]), "--text-file", str(text_file), "--bits", "4",
                 "--keep", "0,1,sinks", "--max-tokens", "32", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["keep"] for r in data["settings"]] == [0, 1, "sinks"]
    assert all(r["delta_nll_ci95"][0] <= r["delta_nll"] <= r["delta_nll_ci95"][1] for r in data["settings"])
    assert Store(db_path).experiment(data["id"], viewer=LOCAL)["kind"] == "kvquant"


@pytest.mark.parametrize("argv,message", [
    (["streaming", "--text-file", "/no/such/file"], "cannot read"),
    (["kvquant", "--text-file", "TEXT", "--bits", "x"], "--bits must be"),
    (["streaming", "--text-file", "TEXT", "--model", "MINI", "--window", "4"], "not a causal LM"),
])
def test_errors_are_one_line_exit_2(argv, message, text_file, tiny_model_dirs, db_path, capsys) -> None:
    argv = [str(text_file) if a == "TEXT" else str(tiny_model_dirs["bert"]) if a == "MINI" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sinkfix: error:") and message in err[-1]
