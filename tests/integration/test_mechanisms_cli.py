"""``sinkrate``, ``massive`` and ``--bos always`` through the CLI: embedded models, stored results, stored settings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import sinkfix
from sinkfix.cli import main
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store

from ..shared_data import data_path

SHAKESPEARE = data_path("tinyshakespeare.txt")
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n")


@pytest.fixture()
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "natural.txt"
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000] if SHAKESPEARE.exists() else TEXT * 60)
    return path


@pytest.mark.parametrize("model_name", ["minilm", "smollm2-135m"])
def test_sinkrate_reports_three_kinds_with_cis_on_embedded_models(
        model_name: str, minilm: sinkfix.LoadedModel, smollm2: sinkfix.LoadedModel, text_file: Path, db_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    code = main(["sinkrate", "--model", model_name, "--text-file", str(text_file), "--n", "8", "--length", "24",
                 "--json", "-"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["kinds"]) == {"natural", "random", "repeated"}
    loaded = minilm if model_name == "minilm" else smollm2
    for kind, rate in data["kinds"].items():
        low, high = rate["ci95"]
        assert 0.0 <= low <= rate["rate"] <= high <= 1.0
        assert len(rate["per_layer"]) == loaded.n_layers and len(rate["per_position"]) == 24
    if model_name == "minilm":
        assert all(r["example"][0] == "[CLS]" for r in data["kinds"].values())
    stored = Store(db_path).experiment(data["id"], viewer=LOCAL)
    assert stored["kind"] == "sinkrate" and stored["result"]["kinds"]["random"]["rate"] == data["kinds"]["random"]["rate"]


def test_sinkrate_without_a_text_file_is_a_one_line_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["sinkrate", "--model", "minilm", "--no-save"]) == 2
    assert capsys.readouterr().err.startswith("sinkfix: error: natural sequences need a text")


def test_massive_names_smollm2s_largest_activation(smollm2: sinkfix.LoadedModel, db_path: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    reference = tmp_path / "reference.txt"
    reference.write_text("Now is the winter of our discontent made glorious summer by this sun of York.\n" * 4)
    code = main(["massive", "--model", "smollm2-135m", "--text", TEXT, "--max-tokens", "48", "--max-chunks", "1",
                 "--reference-file", str(reference), "--json", "-"])
    assert code == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    top = data["top"]
    assert top["ratio"] > 1000 and top["max_abs"] > 100  # SmolLM2 has massive activations
    assert top["ratio"] == pytest.approx(top["max_abs"] / top["median_abs"])
    assert f"layer {top['layer']}" in captured.err and f"dim {top['dim']}" in captured.err
    arms = data["intervention"]["arms"]
    assert arms["zero"]["delta_nll"] > arms["mean"]["delta_nll"]
    for arm in arms.values():
        assert arm["ci95"][0] <= arm["delta_nll"] <= arm["ci95"][1]
    assert Store(db_path).experiment(data["id"], viewer=LOCAL)["kind"] == "massive"


def test_massive_mean_without_a_reference_on_one_chunk_is_refused(smollm2: sinkfix.LoadedModel,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """One chunk and no reference: the mean is the value itself, so the CLI says what is missing."""
    assert main(["massive", "--model", "smollm2-135m", "--text", TEXT, "--max-tokens", "48", "--max-chunks", "1",
                 "--no-save"]) == 2
    err = capsys.readouterr().err
    assert "needs a reference text" in err and "--reference-file" in err
    # The zero arm alone is still a valid request; its printed token reads ␣-style, never Ġ.
    assert main(["massive", "--model", "smollm2-135m", "--text", TEXT, "--max-tokens", "48", "--max-chunks", "1",
                 "--arms", "zero", "--no-save", "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert set(json.loads(captured.out)["intervention"]["arms"]) == {"zero"}
    assert "Ġ" not in captured.err


def test_cli_prints_tokens_as_the_dashboard_shows_them(smollm2: sinkfix.LoadedModel, db_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["analyze", "The quick brown fox", "--model", "smollm2-135m"]) == 0
    err = capsys.readouterr().err
    assert "␣quick" in err and "Ġquick" not in err


def test_massive_intervention_on_minilm_is_a_clear_error(minilm: sinkfix.LoadedModel, capsys: pytest.CaptureFixture) -> None:
    assert main(["massive", "--model", "minilm", "--text", "hello world", "--no-save"]) == 2
    assert "causal LM head" in capsys.readouterr().err


def test_bos_always_works_and_is_stored(tiny_model_dirs: dict[str, Path], db_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    model = str(tiny_model_dirs["llama"])
    assert main(["analyze", "the cat sat on the mat", "--model", model, "--json", "-"]) == 0
    auto = json.loads(capsys.readouterr().out)
    assert main(["analyze", "the cat sat on the mat", "--model", model, "--bos", "always", "--json", "-"]) == 0
    captured = capsys.readouterr()
    always = json.loads(captured.out)
    assert "already stored" not in captured.err  # bos is part of the cache key
    assert always["token_list"] == ["<s>", *auto["token_list"]]
    store = Store(db_path)
    runs = {run.settings.bos: run for run in (store.get(row["id"], viewer=LOCAL) for row in store.list(viewer=LOCAL))}
    assert set(runs) == {"auto", "always"}
    bos = sinkfix.get_model(model).tokenizer.bos_token_id
    assert runs["always"].token_ids == [bos, *runs["auto"].token_ids]
    assert list(runs["always"].offsets[0]) == [0, 0] and runs["always"].offsets[1:] == runs["auto"].offsets
