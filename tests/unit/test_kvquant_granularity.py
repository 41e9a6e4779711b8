"""KV quantisation granularity: per-channel scales worked out by hand, kept tokens left out of the scales
they would widen, and the experiment's and the command's keys/values options."""
from __future__ import annotations

import json

import pytest
import torch

import sinkfix
from sinkfix.cli.main import main
from sinkfix.errors import SettingsError
from sinkfix.experiments import kvquant

TEXT = " ".join(["the cat sat on the mat and the dog was in the sun ."] * 24)


def test_per_channel_groups_tokens_of_one_channel() -> None:
    # [1, 1, T=5, d=2]; groups of 2 tokens along the sequence: {0, 1}, {2, 3}, {4} per channel
    x = torch.tensor([[[[4.0, 0.1], [1.0, -0.2], [0.5, 0.3], [-0.25, 0.6], [2.0, -1.0]]]])
    out = kvquant.fake_quantize(x, 4, group=2, granularity="per-channel")  # levels -7..7
    for channel in range(2):
        for tokens in ([0, 1], [2, 3], [4]):
            column = x[0, 0, tokens, channel]
            scale = column.abs().max() / 7
            expected = torch.round(column / scale) * scale
            torch.testing.assert_close(out[0, 0, tokens, channel], expected)
    # per token, each row has its own scale instead
    per_token = kvquant.fake_quantize(x, 4, group=2)
    for t in range(5):
        scale = x[0, 0, t].abs().max() / 7
        torch.testing.assert_close(per_token[0, 0, t], torch.round(x[0, 0, t] / scale) * scale)


def test_a_kept_outlier_no_longer_widens_its_channels_scale() -> None:
    x = torch.tensor([[[[100.0], [1.0], [0.6], [-0.3]]]])  # token 0: a sink's outlier in this channel
    key_only = kvquant.KVQuantizer(2, group=4, keep=(0,), keys="per-channel")
    kept, _ = key_only(0, x, x)
    assert kept[0, 0, 0, 0] == 100.0  # exact
    # ternary with the scale of tokens 1..3 alone (max 1.0): 1 -> 1, 0.6 -> 1, -0.3 -> 0
    assert kept[0, 0, 1:, 0].tolist() == [1.0, 1.0, 0.0]
    # without keeping it, the outlier's scale (100) rounds every other token of the channel to 0
    lost, _ = kvquant.KVQuantizer(2, group=4, keys="per-channel")(0, x, x)
    assert lost[0, 0, 1:, 0].tolist() == [0.0, 0.0, 0.0]
    # per token, keeping a token changes nothing for the others
    per_token, _ = kvquant.KVQuantizer(2, group=1, keep=(0,))(0, x, x)
    assert per_token[0, 0, 1:, 0].tolist() == kvquant.fake_quantize(x, 2, group=1)[0, 0, 1:, 0].tolist()


def test_bad_granularity_is_a_one_line_error() -> None:
    with pytest.raises(SettingsError, match="granularity"):
        kvquant.fake_quantize(torch.ones(1, 1, 2, 2), 4, granularity="per-head")


@pytest.fixture(scope="module")
def llama(tiny_model_dirs) -> sinkfix.LoadedModel:
    return sinkfix.load_model(str(tiny_model_dirs["llama"]))


def test_the_experiment_and_the_command_take_keys_and_values(llama, tiny_model_dirs, tmp_path, db_path,
                                                               capsys: pytest.CaptureFixture) -> None:
    result = kvquant.kv_quant(llama, TEXT, bits=(4,), keep=(0, 1), max_tokens=40, max_chunks=2,
                              keys="per-channel", values="per-token").to_json()
    assert (result["keys"], result["values"]) == ("per-channel", "per-token")
    none, first = result["settings"]  # keep 0, keep 1: the gain of keeping token 0 is their paired difference
    assert "delta_vs_none" not in none
    assert first["delta_vs_none"] == pytest.approx(first["nll"] - none["nll"])
    low, high = first["delta_vs_none_ci95"]
    assert low <= first["delta_vs_none"] <= high
    per_token = kvquant.kv_quant(llama, TEXT, bits=(4,), keep=(0, 1), max_tokens=40, max_chunks=2).to_json()
    assert per_token["keys"] == "per-token"
    assert [r["nll"] for r in result["settings"]] != [r["nll"] for r in per_token["settings"]]
    with pytest.raises(SettingsError, match="keys must be quantised"):
        kvquant.kv_quant(llama, TEXT, bits=(4,), keep=(0,), keys="per-row")
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    assert main(["kvquant", "--model", str(tiny_model_dirs["llama"]), "--text-file", str(text), "--bits", "4",
                 "--keep", "0", "--max-tokens", "40", "--max-chunks", "2", "--keys", "per-channel", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["keys"] == "per-channel" and data["values"] == "per-token"
