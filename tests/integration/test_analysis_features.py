"""Analysis details on tiny random models: map limit, truncation, contributions, seed JSON."""
import numpy as np
import pytest
import torch

import sinkfix
from sinkfix.models import model_inputs

TEXT = "the cat sat on the mat . hello world"


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dirs):
    return sinkfix.load_model(str(tiny_model_dirs["llama"]))


@pytest.fixture(scope="module")
def tiny_bert(tiny_model_dirs):
    return sinkfix.load_model(str(tiny_model_dirs["bert"]))


def test_shapes_and_normalisation(tiny_llama):
    a = sinkfix.analyze(TEXT, tiny_llama)
    L, H, T = tiny_llama.n_layers, tiny_llama.n_heads, a.n_tokens
    assert a.att_received_head.shape == (L, H, T) and a.alpha.shape == (L, H, T)
    assert a.value_norm_head.shape == (L, tiny_llama.n_kv_heads, T)
    assert a.maps.shape == (L, H, T, T) and a.corrected_maps.shape == (L, H, T, T)
    np.testing.assert_allclose(a.att_received_layer.sum(-1), 1.0, atol=1e-5)
    assert a.value_norm.max() == pytest.approx(1.0)
    np.testing.assert_allclose(a.att_received, a.att_received_head.mean(axis=(0, 1)), atol=1e-7)
    assert len(a.head_table()) == L * H and len(a.token_table()) == T


def test_above_map_limit_keeps_only_reductions(tiny_llama):
    full = sinkfix.analyze(TEXT, tiny_llama)
    small = sinkfix.analyze(TEXT, tiny_llama, sinkfix.AnalysisSettings(map_token_limit=4))
    assert small.maps is None and small.corrected_maps is None and small.mean_map is None
    np.testing.assert_array_equal(small.att_received, full.att_received)
    seed = small.to_seed_json()
    assert seed["corrected_att_scores"] is None and "map limit of 4" in seed["note"]


def test_truncation_is_warned(tiny_bert):
    a = sinkfix.analyze(" ".join(["the cat"] * 30), tiny_bert, sinkfix.AnalysisSettings(max_tokens=16))
    assert a.n_tokens == 16 and a.truncated
    assert any("truncated" in w for w in a.warnings)


def test_contribution_matches_explicit_kobayashi(tiny_bert):
    """mean_i ||A[i,j] W_O^h v_j|| computed by hand from an eager forward."""
    a = sinkfix.analyze(TEXT, tiny_bert)
    eager = type(tiny_bert.model).from_pretrained(tiny_bert.source, attn_implementation="eager").eval()
    inputs = model_inputs(tiny_bert.model, tiny_bert.tokenizer(TEXT, return_tensors="pt"))
    with torch.inference_mode():
        out = eager.base_model(**inputs, output_attentions=True, output_hidden_states=True)
        layer = 1
        attn = eager.base_model.encoder.layer[layer].attention
        v = attn.self.value(out.hidden_states[layer])[0]  # [T, hidden]
        w_o = attn.output.dense.weight
        heads, d = tiny_bert.n_heads, v.shape[-1] // tiny_bert.n_heads
        probs = out.attentions[layer][0]
        expected = torch.zeros(heads, a.n_tokens)
        for h in range(heads):
            f = v[:, h * d : (h + 1) * d] @ w_o[:, h * d : (h + 1) * d].T  # [T, hidden]
            expected[h] = (probs[h][:, :, None] * f[None]).norm(dim=-1).mean(dim=0)
    np.testing.assert_allclose(a.contribution[layer], expected.numpy(), rtol=1e-4, atol=1e-6)


def test_correction_redistributes_detrimental_tokens(tiny_bert):
    # Thresholds that make every non-first token detrimental: the correction must move mass to token 0.
    a = sinkfix.analyze(TEXT, tiny_bert, sinkfix.AnalysisSettings(tau_att=0.0, tau_norm=1.0, beta=0.0))
    assert a.sink_indices == list(range(1, a.n_tokens))
    np.testing.assert_allclose(a.corrected_maps[..., 0], 1.0, atol=1e-5)
    assert set(a.labels) == {"beneficial", "detrimental"}


def test_metadata(tiny_llama):
    a = sinkfix.analyze(TEXT, tiny_llama)
    assert a.version == sinkfix.__version__ and a.fingerprint == tiny_llama.fingerprint
    assert set(a.timings) >= {"forward_s", "total_s"}
    assert a.settings.layer == tiny_llama.n_layers // 2


def test_empty_text_raises(tiny_llama):
    with pytest.raises(sinkfix.InputError):
        sinkfix.analyze("  ", tiny_llama)
