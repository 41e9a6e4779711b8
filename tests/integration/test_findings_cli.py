"""``sinkfix profile | lengths | bos | secondary`` through the CLI: JSON shape, stored experiments, one-line
errors; and one short end-to-end profile of SmolLM2 checked against its known massive activation."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import sinkfix
from sinkfix.cli import main
from sinkfix.store import Store

from ..shared_data import data_path
from ..tiny_models import WORDS

SHAKESPEARE = data_path("tinyshakespeare.txt")


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "toy.txt"
    path.write_text(" ".join(random.Random(5).choices(WORDS, k=3000)))
    return path


def test_four_commands_store_their_results(tiny_model_dirs: dict[str, Path], corpus: Path, db_path: Path,
                                           tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = str(tiny_model_dirs["llama"])
    runs = {
        "profile": ["profile", "--file", str(corpus), "--windows", "3", "--length", "16"],
        "lengths": ["lengths", "--file", str(corpus), "--lengths", "8,16,32", "--windows", "2"],
        "bos": ["bos", "--file", str(corpus), "--lengths", "8,16", "--windows", "2"],
        "secondary": ["secondary", "--file", str(corpus), "--windows", "2", "--length", "24", "--min-queries", "4"],
    }
    for kind, argv in runs.items():
        out = tmp_path / f"{kind}.json"
        assert main([*argv, "--model", model, "--json", str(out)]) == 0
        data = json.loads(out.read_text())
        assert data["kind"] == kind and data["model"] == model
        stored = Store(db_path).experiment(data["id"])
        assert stored["kind"] == kind and stored["result"]["kind"] == kind
    err = capsys.readouterr().err
    assert "95% CI" in err and "secondary sinks among" in err and "bos_masked - bos" in err
    lengths = json.loads((tmp_path / "lengths.json").read_text())
    assert [row["length"] for row in lengths["lengths"]] == [8, 16, 32]
    assert all(set(row["sink_rate"]) >= {"mean", "ci95", "n"} for row in lengths["lengths"])


@pytest.mark.parametrize("argv, message", [
    (["bos", "--model", "minilm", "--lengths", "8"], "not a causal LM"),
    (["lengths", "--model", "minilm", "--lengths", "8,100000"], "over minilm's limit"),
    (["lengths", "--model", "minilm", "--lengths", "8,x"], "comma-separated whole numbers"),
    (["secondary", "--model", "minilm", "--share", "0"], "share must be"),
])
def test_user_errors_are_one_line(argv: list[str], message: str, minilm: sinkfix.LoadedModel, corpus: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    assert main([*argv, "--file", str(corpus), "--no-save"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("sinkfix: error:")


def test_profile_needs_a_text_or_a_file(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["profile"])
    assert stop.value.code == 2 and "--text" in capsys.readouterr().err


def test_profile_of_one_text_on_smollm2(smollm2: sinkfix.LoadedModel, db_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    assert main(["profile", "--text", text, "--model", "smollm2-135m", "--json", "-", "--no-save"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "smollm2-135m" and data["n_texts"] == 1
    assert [row["layer"] for row in data["layers"]] == list(range(30))
    first = data["layers"][0]
    assert set(first) >= {"layer", "token0_norm", "median_norm", "sink_rate", "token0_alpha", "repr_entropy"}
    assert first["token0_norm"]["ci95"] is None  # one text: no interval, and the notes say so
    # SmolLM2's massive activation sits on token 0 from layer 11 (docs/experiments/mechanisms.md).
    ratios = [row["token0_norm"]["mean"] / row["median_norm"]["mean"] for row in data["layers"]]
    assert max(ratios) > 50 and ratios.index(max(ratios)) >= 11
    assert 0 < data["layers"][15]["repr_entropy"]["mean"] < 10 and data["together"]["sentence"]


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="needs tinyshakespeare.txt in SINKFIX_DATA")
def test_default_corpus_is_tinyshakespeare(tiny_model_dirs: dict[str, Path], capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKFIX_DATA", str(SHAKESPEARE.parent))
    assert main(["lengths", "--model", str(tiny_model_dirs["gpt2"]), "--lengths", "8,16", "--windows", "2",
                 "--json", "-", "--no-save"]) == 0
    assert json.loads(capsys.readouterr().out)["corpus"] == "tinyshakespeare.txt"
