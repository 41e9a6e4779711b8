"""Hybrid models (attention in some layers only), gated attention and multi-head latent attention (issue 24).

Tiny Qwen3-Next, Jamba and LFM2 (4 layers, attention in 1 and 3; ``hybrid_models`` in conftest)
are checked against an independent computation: the same weights loaded with transformers'
eager attention and ``output_attentions=True``.
"""
from __future__ import annotations

from unittest import mock

import pytest
import torch

import sinkfix
from sinkfix.errors import SettingsError, UnsupportedModelError
from sinkfix.experiments.intervene import Intervention, head_map
from sinkfix.policy.ownership import LOCAL
from sinkfix.store import Store
from sinkfix.errors import StoreError
from tests import conformance
from tests.tiny_models import HYBRIDS, build_conformance_model

TEXT = conformance.TEXT


def _eager(loaded: sinkfix.LoadedModel, ids: list[int]):
    """The same checkpoint loaded with eager attention: its logits and its attention maps [L_attn, H, T, T]."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(loaded.source, attn_implementation="eager").eval()
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    maps = [a for a in out.attentions if a is not None]
    return out.logits[0], torch.stack(maps)[:, 0].float()


@pytest.mark.parametrize("arch", HYBRIDS)
def test_hybrids_analyse_their_attention_layers_exactly(arch, hybrid_models):
    loaded = hybrid_models[arch]
    assert (loaded.n_layers, loaded.attention_layers) == (4, [1, 3])
    analysis = sinkfix.analyze(TEXT, loaded)
    logits, maps = _eager(loaded, analysis.token_ids)
    assert maps.shape[0] == 2  # eager returns maps for its attention layers only
    torch.testing.assert_close(torch.from_numpy(analysis.att_received), maps.mean(dim=(0, 1)).mean(dim=0),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.from_numpy(analysis.att_received_head), maps.mean(dim=2), atol=1e-5, rtol=0)
    with torch.inference_mode():
        ours = loaded.model(input_ids=torch.tensor([analysis.token_ids])).logits[0]
    assert float((ours - logits).abs().max()) <= 1e-4
    # Rows are attention layers, numbered as the model numbers them; the others are marked, not dropped.
    assert analysis.layer_numbers == [1, 3] and analysis.non_attention_layers == [0, 2]
    assert sorted({row["layer"] for row in analysis.head_table()}) == [1, 3]
    assert analysis.settings.layer == 3  # the middle attention layer
    assert analysis.to_seed_json()["non_attention_layers"] == [0, 2]


def test_value_norm_layer_must_be_an_attention_layer(hybrid_models):
    loaded = hybrid_models["jamba"]
    with pytest.raises(SettingsError, match="layer 2 is not an attention layer.*layers 1, 3 of 0..3"):
        sinkfix.analyze(TEXT, loaded, sinkfix.AnalysisSettings(layer=2))
    picked = sinkfix.analyze(TEXT, loaded, sinkfix.AnalysisSettings(layer=1))
    norms = picked.value_norm_layer[picked.row_of(1)]
    torch.testing.assert_close(torch.from_numpy(picked.value_norm), torch.from_numpy(norms / norms.max()))


def test_interventions_address_attention_layers_by_model_number(hybrid_models):
    layers = hybrid_models["lfm2"].layer_numbers
    assert head_map(Intervention(target="first"), layers, 4) == {1: None, 3: None}
    assert head_map(Intervention(target="first", heads=((3, 2),)), layers, 4) == {3: (2,)}
    with pytest.raises(SettingsError, match="layer 0 is out of range: this model has attention in layers 1, 3"):
        head_map(Intervention(target="first", layers=(0,)), layers, 4)


def test_gate_values_are_each_heads_mean_sigmoid_gate(hybrid_models):
    """Independent: sigmoid of the gate half of q_proj(h), recomputed from each attention layer's input."""
    loaded = hybrid_models["qwen3_next"]
    analysis = sinkfix.analyze(TEXT, loaded)
    inputs: dict[int, torch.Tensor] = {}
    hooks = [loaded.base.layers[layer].self_attn.register_forward_pre_hook(
        lambda module, args, kwargs, layer=layer: inputs.__setitem__(layer, kwargs["hidden_states"]), with_kwargs=True)
        for layer in (1, 3)]
    try:
        with torch.inference_mode():
            loaded.base(input_ids=torch.tensor([analysis.token_ids]))
    finally:
        for hook in hooks:
            hook.remove()
    expected = []
    with torch.inference_mode():
        for layer in (1, 3):
            attention = loaded.base.layers[layer].self_attn
            projected = attention.q_proj(inputs[layer]).view(1, analysis.n_tokens, loaded.n_heads, 2 * attention.head_dim)
            _, gate = torch.chunk(projected, 2, dim=-1)
            expected.append(torch.sigmoid(gate).mean(dim=(0, 1, 3)))
    torch.testing.assert_close(torch.from_numpy(analysis.attention_gate), torch.stack(expected), atol=1e-6, rtol=0)
    gates = analysis.to_seed_json()["attention_gates"]
    assert [(g["layer"], g["head"]) for g in gates] == [(layer, head) for layer in (1, 3) for head in range(4)]
    first = gates[5]  # layer 3, head 1: the gate beside the head's first-token mass
    assert first["gate"] == pytest.approx(float(expected[1][1]), abs=1e-6)
    assert first["first_token_mass"] == pytest.approx(float(analysis.att_received_head[1, 1, 0]))
    assert sinkfix.analyze(TEXT, hybrid_models["jamba"]).attention_gate is None


def test_store_round_trips_attention_layers_and_gates(hybrid_models, db_path):
    analysis = sinkfix.analyze(TEXT, hybrid_models["qwen3_next"])
    store = Store(db_path)
    run_id = store.save(analysis, viewer=LOCAL)
    back = store.get(run_id, viewer=LOCAL)
    assert back.attention_layers == [1, 3] and back.n_layers == 4
    assert back.attention_gate.tobytes() == analysis.attention_gate.tobytes()
    assert back.att_received_head.tobytes() == analysis.att_received_head.tobytes()
    assert store.head_rows(run_id, viewer=LOCAL) == analysis.head_table()
    original, _ = store.head_map(run_id, 3, 2, viewer=LOCAL)
    torch.testing.assert_close(torch.from_numpy(original), torch.from_numpy(analysis.maps[1, 2]), atol=1e-3, rtol=0)
    with pytest.raises(StoreError, match="attention in layers 1, 3 of 0..3"):
        store.head_map(run_id, 2, 0, viewer=LOCAL)
    full = store.get(store.save(sinkfix.analyze(TEXT, hybrid_models["jamba"], sinkfix.AnalysisSettings(layer=1)), viewer=LOCAL), viewer=LOCAL)
    assert full.attention_layers == [1, 3] and full.settings.layer == 1
    store.close()


def test_probe_refuses_a_hybrid_whose_attention_layer_bypasses_the_interface(tmp_path):
    """Layer 3 of the tiny Qwen3-Next computes its attention with the eager function directly."""
    from transformers.models.qwen3_next import modeling_qwen3_next as modeling

    target = build_conformance_model("qwen3_next", tmp_path / "qwen3_next")
    original = modeling.Qwen3NextAttention.forward
    interface = modeling.ALL_ATTENTION_FUNCTIONS

    def bypassing(self, *args, **kwargs):
        if self.layer_idx != 3:
            return original(self, *args, **kwargs)
        with mock.patch.object(type(interface), "get_interface", lambda _self, _name, default: default):
            return original(self, *args, **kwargs)

    with mock.patch.object(modeling.Qwen3NextAttention, "forward", bypassing):
        with pytest.raises(UnsupportedModelError, match=r"from layers \[1\] but not from layers \[3\] of the same kind") as caught:
            sinkfix.load_model(str(target))
    assert "\n" not in str(caught.value)


def test_mla_is_exact_and_value_norms_use_the_value_head_dimension(tmp_path):
    """DeepSeek-V3's multi-head latent attention: q/k heads of 16 dims (8 nope + 8 rope), values of 8."""
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as modeling

    outcome = conformance.check(conformance.by_type("deepseek_v3"), tmp_path)
    assert outcome.state == "exact", outcome.reason
    loaded = sinkfix.load_model(str(build_conformance_model("deepseek_v3", tmp_path / "dsv3")))
    analysis = sinkfix.analyze(TEXT, loaded)
    seen: dict[int, torch.Tensor] = {}
    eager = modeling.eager_attention_forward

    def spy(module, query, key, value, *args, **kwargs):
        seen[module.layer_idx] = (query.shape[-1], value)
        return eager(module, query, key, value, *args, **kwargs)

    loaded.model.set_attn_implementation("eager")
    try:
        with mock.patch.object(modeling, "eager_attention_forward", spy), torch.inference_mode():
            loaded.base(input_ids=torch.tensor([analysis.token_ids]))
    finally:
        loaded.model.set_attn_implementation("sinkfix")
    qk_dim, value = seen[0]
    assert (qk_dim, value.shape[-1]) == (16, 8)
    expected = torch.stack([seen[layer][1][0].float().norm(dim=-1) for layer in sorted(seen)])  # [L, H, T]
    torch.testing.assert_close(torch.from_numpy(analysis.value_norm_head), expected, atol=1e-5, rtol=0)


def test_streaming_refuses_a_hybrid_in_one_line(hybrid_models):
    from sinkfix.experiments.sinkcache import SinkCache

    with pytest.raises(SettingsError, match=r"layers \[0, 2\] of this hybrid model keep a recurrent state") as caught:
        SinkCache(hybrid_models["lfm2"].model.config)
    assert "\n" not in str(caught.value)


def test_an_intervention_edits_the_attention_layers_of_a_hybrid(hybrid_models):
    """The plan covers layers 1 and 3; with beta = 1 it is the identity, with beta = 0 on token 0 it
    changes the logits, and the clean forward's statistics hold the attention layers only."""
    from sinkfix.experiments.evaluate import forward
    from sinkfix.experiments.intervene import make_plan, stats_for

    loaded = hybrid_models["jamba"]
    ids = loaded.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    mask = torch.ones_like(ids)
    stats = stats_for(mask, loaded.layer_numbers, None)
    clean = forward(loaded, ids, mask, stats=stats)
    assert sorted(stats.received_layers) == [1, 3] and stats.norm_layer == 3
    keep = make_plan(Intervention(target="first", beta=1.0), stats, mask.bool(), loaded.layer_numbers, loaded.n_heads)
    assert sorted(keep.heads) == [1, 3]
    torch.testing.assert_close(forward(loaded, ids, mask, keep).logits, clean.logits, atol=1e-6, rtol=0)
    moved = make_plan(Intervention(target="first", beta=0.0), stats, mask.bool(), loaded.layer_numbers, loaded.n_heads)
    assert float((forward(loaded, ids, mask, moved).logits - clean.logits).abs().max()) > 1e-3


def test_corpus_summary_marks_a_hybrids_layers_without_attention():
    """Store rows name layers 1 and 3 only: layers 0 and 2 are NaN rows, not heads with a sink rate of 0."""
    import json

    import numpy as np

    from sinkfix.analysis.corpus import CorpusSummary, format_summary, run_stats_from_rows, summarize

    heads = [{"line_no": line, "layer": layer, "head": head, "top_alpha": alpha}
             for line, alpha in ((1, 0.9), (2, 0.1)) for layer in (1, 3) for head in (0, 1)]
    tokens = [{"line_no": line, "idx": 0, "token": "a", "value_norm": 1.0, "sink_rate": 0.5, "label": "neutral"}
              for line in (1, 2)]
    summary = summarize(run_stats_from_rows(heads, tokens), epsilon=0.3)
    assert np.isnan(summary.head_sink_rate[[0, 2]]).all()
    assert summary.head_sink_rate[[1, 3]].tolist() == [[0.5, 0.5], [0.5, 0.5]]
    data = json.loads(summary.to_json())  # standard JSON: no NaN
    assert data["head_sink_rate"][0] == [None, None]
    assert np.isnan(CorpusSummary.from_dict(data).head_sink_rate[0]).all()
    text = format_summary(summary)
    assert "L0    (not an attention layer)" in text and "heads that sink on every input: 0 of 4" in text
