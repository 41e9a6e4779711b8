"""Every architecture is exact or refused: SinkFix's attention against each model's own eager attention.

The tiny models, the comparison and the states live in ``tests/conformance.py`` (shared with
``benchmarks/conformance.py``, which writes the table in docs/architectures.md). The five architectures the issue
names run here every time; the sweep over every registered architecture is marked slow.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import sinkfix
from sinkfix.capture import attention as capture
from sinkfix.capture import keywords
from sinkfix.errors import UnsupportedModelError
from tests import conformance

NAMED = ("gemma2", "gpt_oss", "mistral", "qwen3", "gemma3_text")


@pytest.mark.parametrize("model_type", NAMED)
def test_named_architectures_are_exact(model_type, tmp_path):
    outcome = conformance.check(conformance.by_type(model_type), tmp_path)
    assert outcome.state == "exact", outcome.reason
    assert outcome.output_diff <= conformance.TOLERANCE and outcome.received_diff <= conformance.TOLERANCE
    assert outcome.adapter == "checked"  # the W_O adapter consumes exactly probs @ V


def _built(model_type: str, tmp_path) -> sinkfix.LoadedModel:
    target = tmp_path / model_type
    conformance.build(conformance.by_type(model_type), target)
    return sinkfix.load_model(str(target))


def _eager_maps(loaded: sinkfix.LoadedModel, ids: list[int]) -> torch.Tensor:
    loaded.model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = loaded.base(input_ids=torch.tensor([ids]), output_attentions=True)
    finally:
        loaded.model.set_attn_implementation(capture.ATTN_NAME)
    return torch.stack(out.attentions)[:, 0].float()  # [L, H, T, T]


def test_gpt_oss_learned_sink_mass_is_reported_and_received_sums_to_the_rest(tmp_path):
    loaded = _built("gpt_oss", tmp_path)
    analysis = sinkfix.analyze(conformance.TEXT, loaded)
    maps = _eager_maps(loaded, analysis.token_ids)
    # Independent: what eager's real-token rows leave out is the learned sink's share.
    expected = 1 - maps.sum(dim=-1).mean(dim=-1)  # [L, H]
    assert analysis.learned_sink_mass.shape == (loaded.n_layers, loaded.n_heads)
    torch.testing.assert_close(torch.from_numpy(analysis.learned_sink_mass), expected, atol=1e-6, rtol=0)
    assert analysis.mean_learned_sink_mass > 0.05  # the scaled sink logits really matter
    scores = analysis.to_seed_json()["att_received_scores"]
    assert sum(scores) == pytest.approx(1 - analysis.mean_learned_sink_mass, abs=1e-5)


def test_models_without_learned_sinks_report_none(tmp_path):
    analysis = sinkfix.analyze(conformance.TEXT, _built("mistral", tmp_path))
    assert analysis.learned_sink_mass is None
    assert sum(analysis.to_seed_json()["att_received_scores"]) == pytest.approx(1.0, abs=1e-5)


def test_softcap_and_sink_logits_change_the_tiny_models(tmp_path):
    """Without this, ignoring ``softcap`` or ``s_aux`` could pass the exactness tests unnoticed."""
    for model_type, attribute in (("gemma2", "softcap"), ("gpt_oss", "s_aux")):
        loaded = _built(model_type, tmp_path)
        ids = loaded.tokenizer(conformance.TEXT, return_tensors="pt")["input_ids"]
        original = keywords.extras

        def without(module, kwargs, _name=attribute):
            return original(module, {k: v for k, v in kwargs.items() if k != _name})

        with torch.inference_mode():
            exact = loaded.base(input_ids=ids)[0]
            keywords.extras = without
            try:
                ignored = loaded.base(input_ids=ids)[0]
            finally:
                keywords.extras = original
        assert (exact - ignored).abs().max() > 1e-2, model_type


def _module(groups: int = 1, sinks: torch.Tensor | None = None) -> torch.nn.Module:
    module = torch.nn.Module()
    module.num_key_value_groups, module.head_dim, module.layer_idx = groups, 8, 0
    if sinks is not None:
        module.sinks = torch.nn.Parameter(sinks)
    return module.eval()


def _qkv(heads: int = 4, kv: int = 2, t: int = 6) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    mask = torch.full((t, t), torch.finfo(torch.float32).min).triu(1)[None, None]
    return torch.randn(1, heads, t, 8) * 3, torch.randn(1, kv, t, 8) * 3, torch.randn(1, kv, t, 8), mask


def test_softcap_is_bit_identical_to_gemma2_eager():
    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward

    q, k, v, mask = _qkv()
    theirs = eager_attention_forward(_module(2), q, k, v, mask, scaling=0.35, softcap=2.0)
    ours = capture.sinkfix_attention(_module(2), q, k, v, mask, scaling=0.35, softcap=2.0)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_s_aux_is_bit_identical_to_gpt_oss_eager_in_one_block_and_close_in_several():
    from transformers.models.gpt_oss.modeling_gpt_oss import eager_attention_forward

    q, k, v, mask = _qkv()
    sinks = torch.tensor([2.0, -1.0, 0.5, 3.0])
    theirs = eager_attention_forward(_module(2, sinks), q, k, v, mask, scaling=0.35, s_aux=sinks)
    ours = capture.sinkfix_attention(_module(2, sinks), q, k, v, mask, scaling=0.35, s_aux=sinks)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    with capture.blocking(4):
        blocked = capture.sinkfix_attention(_module(2, sinks), q, k, v, mask, scaling=0.35, s_aux=sinks)
    torch.testing.assert_close(blocked[0], theirs[0], atol=1e-6, rtol=0)


def test_position_bias_matches_t5_eager_and_unknown_keywords_are_refused():
    from transformers.models.t5.modeling_t5 import eager_attention_forward

    q, k, v, mask = _qkv(heads=2, kv=2)
    bias = torch.randn(1, 2, 6, 6)
    theirs = eager_attention_forward(_module(), q, k, v, mask, scaling=1.0, position_bias=bias)
    ours = capture.sinkfix_attention(_module(), q, k, v, mask, scaling=1.0, position_bias=bias)
    assert torch.equal(ours[0], theirs[0])
    # Keywords eager ignores pass whatever their value; an unknown one passes only as None.
    capture.sinkfix_attention(_module(), q, k, v, mask, scaling=1.0, sliding_window=4, position_ids=None,
                              is_causal=True, mystery=None)
    with pytest.raises(capture.UnsupportedKeywordError, match="'mystery'"):
        capture.sinkfix_attention(_module(), q, k, v, mask, scaling=1.0, mystery=0.5)


def test_probe_refuses_a_model_whose_capture_would_differ(tmp_path, monkeypatch):
    target = tmp_path / "llama"
    conformance.build(conformance.by_type("llama"), target)
    original = capture._probabilities

    def perturbed(scores, dtype, *args, **kwargs):
        probs, sink = original(scores, dtype, *args, **kwargs)
        return probs * 0.99, sink  # a silently wrong softmax

    monkeypatch.setattr(capture, "_probabilities", perturbed)
    with pytest.raises(UnsupportedModelError, match="does not reproduce this model's own eager attention"):
        sinkfix.load_model(str(target))


def test_falcon_is_refused_with_a_sentence_a_user_understands(tmp_path):
    target = tmp_path / "falcon"
    conformance.build(conformance.by_type("falcon"), target)
    with pytest.raises(UnsupportedModelError, match="in its own code .* instead of through transformers' attention interface") as caught:
        sinkfix.load_model(str(target))
    assert "SinkFix supports" in str(caught.value) and "\n" not in str(caught.value)
    cli = subprocess.run([sys.executable, "-m", "sinkfix", "analyze", "hello world", "--model", str(target), "--no-save"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2
    errors = [line for line in cli.stderr.splitlines() if line.startswith("sinkfix: error:")]  # beside progress lines
    assert len(errors) == 1 and "instead of through transformers' attention interface" in errors[0]
    assert "Traceback" not in cli.stderr


@pytest.mark.slow
def test_every_registered_architecture_is_exact_or_refused(tmp_path):
    outcomes = [conformance.check(arch, tmp_path) for arch in conformance.architectures()]
    bad = [(o.architecture.model_type, o.state, o.reason) for o in outcomes if o.state in ("different", "error")]
    assert not bad
    assert sum(o.state == "exact" for o in outcomes) >= 40
    assert all(o.reason for o in outcomes if o.state in ("refused", "skipped"))


@pytest.mark.parametrize("model_type", ("gemma2", "gpt_oss", "mistral"))
def test_query_blocks_equal_one_block_with_softcap_sinks_and_sliding_windows(model_type, tmp_path):
    """Several blocks (causal key skipping; fused logits where there is no soft-capping) against one block,
    on the architectures whose attention has soft-capping, learned sinks or sliding-window layers."""
    loaded = _built(model_type, tmp_path)
    whole = sinkfix.analyze(conformance.TEXT, loaded)
    blocked = sinkfix.analyze(conformance.TEXT, loaded, sinkfix.AnalysisSettings(query_block=3))
    assert whole.n_tokens > 6  # several blocks, the last one partial
    for name in ("att_received_head", "entropy", "value_norm_head", "maps"):
        torch.testing.assert_close(torch.from_numpy(getattr(blocked, name)), torch.from_numpy(getattr(whole, name)),
                                   atol=1e-5, rtol=0, msg=name)
    if whole.learned_sink_mass is not None:
        torch.testing.assert_close(torch.from_numpy(blocked.learned_sink_mass),
                                   torch.from_numpy(whole.learned_sink_mass), atol=1e-5, rtol=0)
