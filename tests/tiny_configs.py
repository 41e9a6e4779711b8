"""Tiny configs for every architecture transformers registers, for the conformance table.

``tiny_config(model_type, model_class)`` starts from the config class the model class itself
takes (a causal-LM class of a multimodal family takes the text config), shrinks every size field
it has with ``TINY`` (sub-configs too: a vision tower left at full size would take gigabytes),
mixes the layer kinds (sliding and full; a hybrid gets two layers of each kind), then applies the
per-family fixes in ``FAMILIES``. Each fix says why the family's own code needs it. Nothing here
changes what SinkFix is tested on: the fixes only make a small model the family's code accepts.
"""
from __future__ import annotations

# Small enough to build ~230 models in minutes, large enough for 4 heads sharing 2 KV heads.
TINY = dict(
    vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    intermediate_size=64, head_dim=8, max_position_embeddings=128, initializer_range=0.2,
    n_embd=32, n_layer=2, n_head=4, n_positions=128, d_model=32, dim=32, n_layers=2, n_heads=4,
    hidden_dim=64, ffn_dim=64, num_layers=2, num_heads=4, d_ff=64, d_kv=8,
    moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4, num_local_experts=4,
    n_routed_experts=4, num_experts_per_tok=2, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8,
    qk_nope_head_dim=8, v_head_dim=8, sliding_window=4, attn_logit_softcapping=2.0,
    pad_token_id=0, bos_token_id=5, eos_token_id=6,
    # encoder-decoder families' decoders (their ForCausalLM classes) and their encoders
    decoder_layers=2, encoder_layers=2, decoder_attention_heads=4, encoder_attention_heads=4,
    decoder_ffn_dim=64, encoder_ffn_dim=64,
    # linear-attention layers of hybrids (Qwen3-Next's gated delta net, ...): 16 x 128 dims by default
    linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=4,
    # Mamba-2 mixers of hybrids (Bamba, Falcon-H1, Nemotron-H, Zamba 2, ...): 8 heads of 8 = 2 x hidden
    mamba_n_heads=8, mamba_d_head=8, mamba_d_state=8, mamba_n_groups=1,
    # routed experts: one group (the default 8 groups do not divide 4 experts), one shared expert
    n_group=1, topk_group=1, n_shared_experts=1,
    rotary_dim=4,  # GPT-J, CodeGen: rotary part of an 8-dim head
    vocab_size_per_layer_input=64, hidden_size_per_layer_input=8,  # Gemma 3n / 4 per-layer embeddings
    index_head_dim=8, index_n_heads=4,  # DeepSeek sparse attention's indexer (V3.2, GLM-5)
)
# Layer kinds that are softmax attention (transformers' ``layer_types`` names); any other kind
# (linear_attention, conv, mamba, ...) makes a hybrid.
ATTENTION_KINDS = {"full_attention", "sliding_attention", "chunked_attention", "indexed_attention", "attention",
                   "hybrid"}
# Per-family fixes on top of TINY, each because the family's own code needs it.
FAMILIES: dict[str, dict] = {
    # Jamba places attention by period/offset (layer_types is derived from them): attention in
    # layers 1 and 3 of 4, Mamba in 0 and 2 (the default period 8 leaves 2 layers with no attention).
    "jamba": dict(num_hidden_layers=4, attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2,
                  expert_layer_offset=1, mamba_d_state=4, mamba_expand=2, mamba_dt_rank=4),
    # LFM2's default puts attention in every layer; the released models alternate short
    # convolutions with attention, so the tiny one does too.
    "lfm2": dict(num_hidden_layers=4, layer_types=["conv", "full_attention"] * 2, full_attn_idxs=[1, 3]),
    # Bamba places attention by index: layers 1 and 3 of 4, Mamba-2 in 0 and 2.
    "bamba": dict(num_hidden_layers=4, attn_layer_indices=[1, 3]),
    # DBRX's modeling code reads attn_config.rope_theta, which DbrxAttentionConfig does not define.
    "dbrx": dict(attn_config={"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0},
                 ffn_config={"ffn_hidden_size": 64, "moe_num_experts": 4, "moe_top_k": 2}),
    # Cohere Compass looks its rotary parameters up per layer kind, and its default config has none.
    "cohere_compass_text": dict(rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
    "esmc": dict(num_key_value_heads=4),  # ESMC's validator refuses grouped-query attention
    # Dory loops its middle layers (recurrent depth): one input, one looped and one output layer, two loops.
    "dory": dict(num_hidden_layers=3, n_input_layers=1, n_recurrent_layers=1, n_output_layers=1, n_recurrent_loops=2,
                 layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    # Gemma 3n: one activation-sparsity value per layer, and no layer reusing another's KV cache
    # (the default shares the last 15 layers' caches, more layers than the tiny model has).
    "gemma3n_text": dict(activation_sparsity_pattern=[0.0, 0.0], num_kv_shared_layers=0),
    # Gemma 4 widens the heads of its global layers per layer (512 vs 256); the tiny one: 16 vs 8.
    "gemma4_text": dict(per_layer_config={"01": {"head_dim": 16}}),
    "gemma4_unified_text": dict(per_layer_config={"01": {"head_dim": 16}}),
    "falcon_h1": dict(mamba_d_ssm=64),  # its Mamba width defaults to 1024 whatever hidden_size is
    "neomme": dict(head_dim=16),  # its M-RoPE rotates a quarter of each head in pairs of 2 x 2 dims
    # dots.llm3 gives some layers 64 MLA heads instead of the default's (per_layer_config); the tiny
    # one keeps that shape: layer 1 has 8 heads where the others have 4 (SinkFix refuses that).
    "dots3_note_text": dict(num_key_value_heads=4, per_layer_config={"01": {
        "num_attention_heads": 8, "num_key_value_heads": 8, "kv_lora_rank": 16, "qk_nope_head_dim": 8}}),
    # Gemma 4's assistant shares every layer's KV cache and has no per-layer embeddings.
    "gemma4_assistant": dict(text_config={"hidden_size_per_layer_input": 0, "vocab_size_per_layer_input": 0,
                                          "num_kv_shared_layers": 2}),
    "gemma4_unified_assistant": dict(text_config={"hidden_size_per_layer_input": 0, "vocab_size_per_layer_input": 0,
                                                  "num_kv_shared_layers": 2}),
}
FAMILIES.update({
    # DeepSeek-style sliding layers of dots.llm3 use the MLA head size (8 nope + 8 rope).
    "dots3_note_text": {**FAMILIES["dots3_note_text"], "head_dim": 16},
    # Granite-4 hybrids' default is all Mamba; the tiny one alternates Mamba and attention.
    "granitemoehybrid": dict(num_hidden_layers=4, layer_types=["mamba", "attention"] * 2),
    # Zamba 2: hybrid layers (Mamba plus the shared attention block) at 1 and 3 of 4.
    "zamba2": dict(num_hidden_layers=4, layers_block_type=["mamba", "hybrid"] * 2, attention_head_dim=8,
                   mamba_headdim=8, n_mamba_heads=8, mamba_d_state=8, num_mem_blocks=1),
    "zamba": dict(num_hidden_layers=4, attn_layer_period=2, attn_layer_offset=1, attention_head_dim=8,
                  mamba_d_state=8, n_mamba_heads=2),
    # LFM2-MoE has no default layer kinds: short convolutions and attention alternate.
    "lfm2_moe": dict(num_hidden_layers=4, layer_types=["conv", "full_attention"] * 2, num_dense_layers=1),
    # RecurrentGemma's block pattern is (recurrent, recurrent, attention): three layers keep one of each.
    "recurrent_gemma": dict(num_hidden_layers=3, block_types=["recurrent", "recurrent", "attention"],
                            lru_width=32, attention_window_size=4),
    "gpt_neo": dict(attention_types=[[["global", "local"], 1]]),  # one global and one local layer
    "mamba2": dict(num_heads=8),  # expand x hidden = heads x head_dim
    "zaya": dict(num_experts_per_tok=1),  # ZAYA supports one expert per token only
    # Inkling 2 pads its vocabulary past the real one, and its sliding layers have their own head counts.
    "inkling2_text": dict(unpadded_vocab_size=64, swa_num_attention_heads=4, swa_num_key_value_heads=2, swa_head_dim=8),
    "inkling2_loop_text": dict(unpadded_vocab_size=64, swa_num_attention_heads=4, swa_num_key_value_heads=2,
                               swa_head_dim=8),
    # Qwen4-exp: hyper-connections of rank 320 and a 20M-entry n-gram vocabulary by default.
    "qwen4_exp_text": dict(hc_lowrank=8, ngram_vocab_size_base=64, make_ngram_vocab_size_divisible_by=8,
                           indexer_n_heads=4, indexer_kv_heads=1, indexer_head_dim=8, indexer_budget=4,
                           indexer_compress_ratio=2),  # sparse: each query keeps 4 key blocks
    "xmod": dict(default_language="en_XX"),  # X-MOD picks a language adapter; without one it cannot run
    "squeezebert": dict(embedding_size=32),  # SqueezeBERT asserts embedding_size == hidden_size
    "mobilebert": dict(embedding_size=16, intra_bottleneck_size=16),  # the bottleneck below hidden_size
    # Reformer's axial position embeddings: dims add up to hidden_size, shape multiplies to the length.
    "reformer": dict(axial_pos_embds_dim=[16, 16], axial_pos_shape=[8, 16], attention_head_size=8),
    # MusicGen's decoder reads interleaved codebooks; one codebook makes a plain token sequence.
    "musicgen_decoder": dict(num_codebooks=1),
    "musicgen_melody_decoder": dict(num_codebooks=1),
    "luke": dict(entity_vocab_size=64, entity_emb_size=16),  # 500k entities by default
    # Perceiver: 256 latents of 1280 dims by default
    "perceiver": dict(d_latents=32, num_latents=8, num_self_attention_heads=4, num_cross_attention_heads=4,
                      num_self_attends_per_block=2),
    "blt": dict(encoder_hash_byte_group_vocab=64),  # BLT's hashed byte n-gram table: 500k rows by default
    # BLT's local encoder and decoder project to the global transformer's width (2048 by default).
    "blt_local_encoder": dict(hidden_size_global=32),
    "blt_local_decoder": dict(hidden_size_global=32),
})
# Arguments the family's default config needs before it validates at all (transformers' own default
# Gemma4AssistantConfig fails its validator: its text config has per-layer embeddings it forbids).
CONSTRUCT: dict[str, dict] = {
    "gemma4_assistant": dict(text_config={"hidden_size_per_layer_input": 0, "vocab_size_per_layer_input": 0}),
}


def tiny_config(model_type: str, model_class: type | None = None):
    """The smallest config of ``model_type`` that ``model_class`` takes, as described above."""
    from transformers import AutoConfig, PretrainedConfig

    default = AutoConfig.for_model(model_type, **CONSTRUCT.get(model_type, {}))
    own = getattr(model_class, "config_class", None)
    if isinstance(own, type) and issubclass(own, PretrainedConfig) and own is not type(default):
        default = own()  # Llama4ForCausalLM takes Llama4TextConfig, not the multimodal Llama4Config
    return type(default)(**shrunk(default))


def shrunk(config) -> dict:
    """Constructor arguments: the size overrides, and each sub-config's own (recursively)."""
    values = overrides(config)
    for name in getattr(config, "sub_configs", None) or {}:
        sub = getattr(config, name, None)
        if sub is not None and hasattr(sub, "to_dict"):  # FAMILIES' fields for a sub-config come last
            values[name] = {**sub.to_dict(), **shrunk(sub), **values.get(name, {})}
    return values


def overrides(config) -> dict:
    """The TINY fields ``config`` has (derived, setter-less fields left alone), layer kinds mixed."""
    # A field at 0 or False is a feature the family switches off (Gemma 4's per-layer inputs): it stays off.
    chosen = {k: v for k, v in TINY.items() if _has(config, k) and not isinstance(_value(config, k), dict)
              and _value(config, k) not in (0, False) and not isinstance(getattr(type(config), k, None), property)}
    if _get(config, "attn_logit_softcapping") is None:
        chosen.pop("attn_logit_softcapping", None)
    if _get(config, "sliding_window") is None:
        chosen.pop("sliding_window", None)
    if _get(config, "kv_lora_rank") is not None:
        # Multi-head latent attention: every query head has its own key and value, decompressed
        # from the shared latent (kv_b_proj), so there are as many KV heads as query heads.
        chosen["num_key_value_heads"] = chosen.get("num_attention_heads", TINY["num_attention_heads"])
    layer_types = _get(config, "layer_types")
    derived = any(isinstance(getattr(type(config), k, None), property) for k in ("layer_types", "layers_block_type"))
    if isinstance(layer_types, list) and layer_types and not derived:
        distinct = list(dict.fromkeys(layer_types))  # keep one of each kind (sliding and full, say)
        # A hybrid gets two layers of each kind, so its attention layers (two of them) are not every layer.
        layers = 2 * len(distinct) if set(distinct) - ATTENTION_KINDS and len(distinct) > 1 else 2
        chosen["layer_types"] = (distinct * layers)[:layers]
        for name in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
            if name in chosen:
                chosen[name] = layers
    chosen.update(FAMILIES.get(getattr(config, "model_type", ""), {}))
    return chosen


def _value(config, name: str) -> object:
    """``config.name``; a per-layer attribute (Gemma 4's head_dim, ...) refuses a global read: None."""
    try:
        return getattr(config, name)
    except AttributeError:
        raise
    except Exception:  # noqa: BLE001 - transformers' AmbiguousGlobalPerLayerAttributeError
        return None


def _has(config, name: str) -> bool:
    """Whether ``config`` has the field; a per-layer field counts (its constructor still takes it)."""
    try:
        _value(config, name)
    except AttributeError:
        return False
    return True


def _get(config, name: str) -> object:
    return _value(config, name) if _has(config, name) else None


# Families transformers' own code cannot build or run as a small model, with the upstream cause
# (checked against transformers 5.24). Only these may be "skipped" in the conformance table.
UPSTREAM: dict[str, str] = {
    "gemma3n": "Gemma 3n's vision tower is a timm model, and timm is not installed (not a SinkFix dependency)",
    "gemma4_assistant": "Gemma 4's assistant reuses a backbone's KV cache in every layer, so it cannot run a forward "
                        "pass on its own",
    "gemma4_unified_assistant": "Gemma 4's assistant reuses a backbone's KV cache in every layer, so it cannot run a "
                                "forward pass on its own",
}
