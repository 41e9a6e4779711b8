"""Long-context experiments: window masks, the rolling sink cache, RoPE re-rotation, KV fake quantisation.

Each check compares with an independent computation: a hand-built mask, hand-filled caches, the
model's own rotary embedding, a plain dense forward, and quantisation worked out by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sinkfix
from sinkfix.capture.attention import transforming_kv
from sinkfix.errors import SettingsError
from sinkfix.experiments import kvquant, perplexity, streaming
from sinkfix.experiments.sinkcache import RopeShift, SinkCache, WindowMask

TEXT = " ".join(["the cat sat on the mat and the dog was in the sun ."] * 12)


@pytest.fixture(scope="module")
def llama(tiny_model_dirs) -> sinkfix.LoadedModel:
    return sinkfix.load_model(str(tiny_model_dirs["llama"]))


def test_window_mask_equals_a_hand_built_one() -> None:
    n, window, sinks = 7, 3, 2
    hand = torch.full((n, n), torch.finfo(torch.float32).min)
    for i in range(n):
        for j in range(i + 1):
            if i - j < window or j < sinks:
                hand[i, j] = 0.0
    mask = WindowMask(n, window, sinks)
    assert torch.equal(mask.full(), hand)
    assert torch.equal(mask[2:5, :6], hand[2:5, :6])  # the per-block slices the attention function asks for
    # row 6 sees the sinks 0, 1 and the window 4, 5, 6; 2 and 3 are hidden
    assert (mask.full()[6] == 0).nonzero().flatten().tolist() == [0, 1, 4, 5, 6]


def _filled_cache(llama: sinkfix.LoadedModel, n: int, shift: RopeShift | None = None) -> SinkCache:
    cache = SinkCache(llama.model.config, shift)
    for layer in range(llama.n_layers):
        # slot j holds the value j everywhere, so what survives is readable
        keys = torch.arange(n, dtype=torch.float32)[None, None, :, None].expand(1, 2, n, 8).clone()
        cache.update(keys, keys.clone() + 100, layer)
    cache.record(torch.arange(n))
    return cache


@pytest.mark.parametrize("start,recent", [(4, 5), (0, 3), (2, 0), (1, 1)])
def test_eviction_keeps_exactly_the_first_k_and_last_r(llama, start: int, recent: int) -> None:
    n = 20
    cache = _filled_cache(llama, n)
    evicted = cache.keep(start, recent)
    expected = list(range(start)) + list(range(n - recent, n))
    assert evicted == n - len(expected)
    assert cache.positions.tolist() == expected
    for layer in cache.layers:
        assert layer.keys[0, 0, :, 0].tolist() == expected
        assert layer.values[0, 1, :, 3].tolist() == [v + 100 for v in expected]
    assert cache.get_seq_length() == len(expected)
    assert cache.keep(start, recent) == 0  # nothing more to evict


def test_masked_window_equals_dense_when_the_window_covers_the_text(llama) -> None:
    ids = perplexity.text_ids(llama, TEXT, None)
    dense = perplexity.sequence_nll(llama, ids)
    for sinks in (0, 4):
        assert np.array_equal(streaming.window_nll(llama, ids, len(ids), sinks), dense)


def test_masked_window_changes_the_nll_and_matches_a_hand_masked_eager_forward(llama) -> None:
    ids = perplexity.text_ids(llama, TEXT, 60)
    window, sinks = 8, 2
    nll = streaming.window_nll(llama, ids, window, sinks)
    # independent: transformers' own eager attention with a hand-built 4-D additive mask
    hand = torch.full((60, 60), torch.finfo(torch.float32).min)
    for i in range(60):
        for j in range(i + 1):
            if i - j < window or j < sinks:
                hand[i, j] = 0.0
    eager = llama.model.config._attn_implementation
    llama.model.config._attn_implementation = "eager"
    try:
        with torch.inference_mode():
            logits = llama.model(input_ids=ids[None], attention_mask=hand[None, None]).logits[0, :-1]
    finally:
        llama.model.config._attn_implementation = eager
    expected = -torch.log_softmax(logits.float(), -1).gather(1, ids[1:, None])[:, 0].double().numpy()
    np.testing.assert_allclose(nll, expected, atol=2e-5)
    assert not np.allclose(nll, perplexity.sequence_nll(llama, ids))


@pytest.mark.parametrize("step", [1, 5, 40])
def test_stream_without_pos_shift_equals_the_masked_window(llama, step: int) -> None:
    ids = perplexity.text_ids(llama, TEXT, None)
    for sinks in (0, 3):
        masked = streaming.window_nll(llama, ids, 16, sinks)
        streamed = streaming.stream_nll(llama, ids, sinks, 16, pos_shift=False, step=step)
        np.testing.assert_allclose(streamed, masked, atol=2e-5)


def test_stream_with_a_cache_larger_than_the_text_is_dense(llama) -> None:
    ids = perplexity.text_ids(llama, TEXT, 50)
    dense = perplexity.sequence_nll(llama, ids)
    np.testing.assert_allclose(streaming.stream_nll(llama, ids, 4, 100, pos_shift=True), dense, atol=2e-5)


def test_pos_shift_rotation_equals_the_model_rope_at_the_new_position(llama) -> None:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    rotary = llama.base.rotary_emb
    raw = torch.randn(1, 2, 3, 8)
    def at(positions):
        cos, sin = rotary(raw, torch.tensor([positions]))
        return apply_rotary_pos_emb(raw, raw, cos, sin)[1]
    shifted = RopeShift.for_model(llama.model, llama.model_type).rotate(at([50, 51, 52]), -37)
    torch.testing.assert_close(shifted, at([13, 14, 15]), atol=1e-5, rtol=1e-5)


def test_pos_shift_is_refused_without_rope(tiny_model_dirs) -> None:
    gpt2 = sinkfix.load_model(str(tiny_model_dirs["gpt2"]))
    with pytest.raises(SettingsError, match="RoPE"):
        RopeShift.for_model(gpt2.model, gpt2.model_type)


def test_recompute_stride_one_is_a_fresh_forward_per_position(llama) -> None:
    ids = perplexity.text_ids(llama, TEXT, 30)
    window = 10
    got = streaming.recompute_nll(llama, ids, window, stride=1)
    assert len(got) == len(ids) - 1 - window
    for q in (window, 17, len(ids) - 2):
        fresh = perplexity.sequence_nll(llama, ids[q - window + 1 : q + 2])[-1]
        assert got[q - window] == pytest.approx(fresh, abs=1e-5)
    strided = streaming.recompute_nll(llama, ids, window, stride=4)
    assert len(strided) == len(got)


def test_quantisation_at_16_bits_is_the_identity(llama) -> None:
    x = torch.randn(2, 3, 5, 16)
    assert kvquant.fake_quantize(x, 16) is x
    ids = perplexity.text_ids(llama, TEXT, 40)
    with transforming_kv(kvquant.KVQuantizer(16)):
        assert np.array_equal(perplexity.sequence_nll(llama, ids), perplexity.sequence_nll(llama, ids))
    dense = perplexity.sequence_nll(llama, ids)
    with transforming_kv(kvquant.KVQuantizer(16)):
        assert np.array_equal(perplexity.sequence_nll(llama, ids), dense)


def test_int8_by_hand() -> None:
    x = torch.tensor([[1.0, -0.6, 0.25, 0.3], [2.0, 0.0, 0.0, -1.0]])
    # group of 4: scale = max|x| / 127; values round to the nearest multiple of the scale
    out = kvquant.fake_quantize(x, 8, group=4)
    for row, got in zip(x, out):
        scale = row.abs().max() / 127
        expected = torch.round(row / scale) * scale
        torch.testing.assert_close(got, expected)
        assert (got - row).abs().max() <= scale / 2 + 1e-7
    # int2 is ternary: -s, 0, s with s = max|x|
    assert kvquant.fake_quantize(x, 2, group=4)[0].tolist() == [1.0, -1.0, 0.0, 0.0]
    # groups of 2 each get their own scale
    two = kvquant.fake_quantize(torch.tensor([[4.0, 1.0, 0.01, 0.02]]), 2, group=2)
    torch.testing.assert_close(two, torch.tensor([[4.0, 0.0, 0.0, 0.02]]))


def test_kept_tokens_stay_exact_and_the_rest_is_quantised() -> None:
    key = torch.randn(1, 2, 6, 8)
    out, _ = kvquant.KVQuantizer(4, 8, keep=(0, 3))(0, key, key)
    assert torch.equal(out[:, :, [0, 3]], key[:, :, [0, 3]])
    torch.testing.assert_close(out[:, :, [1, 2, 4, 5]], kvquant.fake_quantize(key, 4, 8)[:, :, [1, 2, 4, 5]])


def test_kv_quant_reports_paired_cis(llama) -> None:
    result = kvquant.kv_quant(llama, TEXT * 2, bits=(2,), keep=(0, "sinks"), max_tokens=40, max_chunks=4).to_json()
    assert result["n_chunks"] == 4 and result["ci_unit"] == "chunk"
    for row in result["settings"]:
        low, high = row["delta_nll_ci95"]
        assert low <= row["delta_nll"] <= high
        assert row["ppl"] == pytest.approx(math.exp(row["nll"]))
        assert row["nll"] - result["dense_nll"] == pytest.approx(row["delta_nll"])


def test_summary_by_hand() -> None:
    nll = np.array([1.0, 2.0, 3.0, 4.0])
    ref = np.array([1.0, 1.0, 1.0, 1.0])
    s = perplexity.summarise(nll, ref, block=2)
    assert s.nll == 2.5 and s.ppl == pytest.approx(math.exp(2.5)) and s.delta_nll == 1.5
    # two blocks (means 0.5 and 2.5 above the reference): the bootstrap CI lies between them
    assert 0.5 <= s.delta_nll_ci95[0] <= s.delta_nll_ci95[1] <= 2.5


def test_masked_window_result_json(llama) -> None:
    result = streaming.masked_window(llama, TEXT, window=16, sinks=(0, 2), n_tokens=None, block=32).to_json()
    assert result["n_positions"] == result["n_tokens"] - 1 - 16
    assert [r["sinks"] for r in result["settings"]] == [0, 2]
    assert len(result["dense_curve"]) == result["n_positions"]
    assert result["dense_ppl"] == pytest.approx(math.exp(np.mean(result["dense_curve"])), rel=1e-4)
