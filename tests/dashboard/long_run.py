"""A stored long run built from synthetic arrays (no model, no T x T map), for the long-run view.

A CPU forward over 32k tokens would take minutes; the view only reads what the store keeps per token
and per head, so arrays with a known shape do: att_received with sinks at token 0 and at ``SINKS``,
labels from the seed rule, α peaking on token 0 in most heads and on a chosen far sink in a few.
"""
from __future__ import annotations

import numpy as np

from sinkfix.analysis import classify
from sinkfix.analysis.result import Analysis
from sinkfix.settings import AnalysisSettings

SINKS = (1, 1500, 20_000)  # positions given extra attention besides token 0
FAR_SINK = 20_000  # the top sink of heads (L-1, 0) and (L-1, 1)
WORD = "lorem"


def long_analysis(n_tokens: int = 32_768, n_layers: int = 6, n_heads: int = 12, seed: int = 0) -> Analysis:
    rng = np.random.default_rng(seed)
    L, H, T = n_layers, n_heads, n_tokens
    settings = AnalysisSettings(tau_att=5.0 / T, map_token_limit=512).resolved(L)
    weights = rng.gamma(2.0, 1.0, size=T).astype(np.float32)
    weights[0] = 0.3 * weights.sum()
    for position in SINKS:
        if position < T:
            weights[position] = 0.02 * weights.sum()
    att_received = (weights / weights.sum()).astype(np.float32)
    received_head = np.broadcast_to(att_received, (L, H, T)).astype(np.float32).copy()
    alpha = (received_head * rng.uniform(0.5, 1.5, size=(L, H, 1))).astype(np.float32)
    alpha[..., 0] = rng.uniform(0.3, 0.9, size=(L, H))
    far = FAR_SINK if FAR_SINK < T else T - 1
    alpha[L - 1, :2, far] = 0.95  # two heads of the last layer sink far into the text
    norm_layer = rng.uniform(0.5, 5.0, size=(L, T)).astype(np.float32)
    for position in SINKS:
        if position < T:
            norm_layer[:, position] *= 0.05  # small value vectors: the seed rule calls these detrimental
    value_norm = (norm_layer[settings.layer] / norm_layer[settings.layer].max()).astype(np.float32)
    rule = classify.SeedRule(settings.tau_att, settings.tau_norm)
    labels = rule.labels(att_received, value_norm)
    tokens = ["<s>", *[f"Ġ{WORD}{i % 97}" for i in range(1, T)]]
    text = " ".join(f"{WORD}{i % 97}" for i in range(1, T))
    offsets, cursor = [(0, 0)], 0
    for i in range(1, T):
        word = f"{WORD}{i % 97}"
        start = cursor + (1 if i > 1 else 0)
        offsets.append((start, start + len(word)))
        cursor = start + len(word)
    return Analysis(
        text=text, tokens=tokens, token_ids=[3 + (i % 97) for i in range(T)], model_name="synthetic-long",
        model_id="/models/synthetic-long", model_type="llama", fingerprint="fplong", is_causal=True,
        n_layers=L, n_heads=H, n_kv_heads=H, settings=settings,
        att_received=att_received, att_received_layer=received_head.mean(axis=1), att_received_head=received_head,
        alpha=alpha, sink_rate=(alpha > settings.epsilon).mean(axis=(0, 1)).astype(np.float32),
        entropy=rng.uniform(1.0, 6.0, size=(L, H)).astype(np.float32), value_norm=value_norm,
        value_norm_layer=norm_layer, value_norm_head=np.broadcast_to(norm_layer[:, None], (L, H, T)).copy(),
        contribution=None, labels=labels, rule=rule.name,
        sink_indices=classify.indices_with(labels, classify.DETRIMENTAL), maps=None, corrected_maps=None,
        created_at="2026-11-29T12:00:00+00:00", offsets=offsets,
    )
