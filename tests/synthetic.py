"""Synthetic Analysis objects of any shape, built without a model (store tests and benchmarks).

The arrays are internally consistent the way analyze() makes them: row-stochastic maps with a
strong sink on token 0, received attention and alpha derived from the maps, labels from the seed
rule and corrected maps from ACT, so Store.save stores them as it would a real run.
"""
from __future__ import annotations

import numpy as np
import torch

from sinkfix.analysis import classify
from sinkfix.analysis.pipeline import Analysis
from sinkfix.analysis.redistribute import redistribute, sink_mask
from sinkfix.settings import AnalysisSettings


def synthetic_analysis(
    n_layers: int = 2,
    n_heads: int = 3,
    n_tokens: int = 6,
    seed: int = 0,
    text: str | None = None,
    model_name: str = "synthetic",
    causal: bool = False,
    keep_maps: bool = True,
    created_at: str = "2025-01-01T00:00:00+00:00",
    settings: AnalysisSettings | None = None,
) -> Analysis:
    rng = np.random.default_rng(seed)
    L, H, T = n_layers, n_heads, n_tokens
    settings = (settings or AnalysisSettings(tau_att=0.12)).resolved(L)
    logits = rng.normal(size=(L, H, T, T)).astype(np.float32)
    # Token 0 and a [SEP]-like token soak up attention, as in real models; the boost grows with
    # log T so they stay sinks at any length. Causal: the second sink is token 1 (keys late in the
    # sequence are seen by few queries).
    sink = 1 if causal else T - 1
    logits[..., 0] += 1.0 + np.log(T)
    if T > 2:
        logits[..., sink] += 1.0 + np.log(T)
    if causal:
        logits = np.where(np.tril(np.ones((T, T), dtype=bool)), logits, -np.inf)
    maps = np.exp(logits - logits.max(axis=-1, keepdims=True))
    maps = (maps / maps.sum(axis=-1, keepdims=True)).astype(np.float32)

    received_head = maps.mean(axis=2)
    if causal:
        alpha = maps.sum(axis=2) / (T - np.arange(T, dtype=np.float32))
    else:
        alpha = received_head
    alpha = alpha.astype(np.float32)
    att_received = received_head.mean(axis=(0, 1)).astype(np.float32)
    norm_layer = rng.uniform(0.5, 5.0, size=(L, T)).astype(np.float32)
    if T > 2:
        norm_layer[:, sink] *= 0.1  # the [SEP]-like sink has a small value norm
    value_norm = (norm_layer[settings.layer] / norm_layer[settings.layer].max()).astype(np.float32)
    rule = classify.SeedRule(settings.tau_att, settings.tau_norm)
    labels = rule.labels(att_received, value_norm)
    sinks = classify.indices_with(labels, classify.DETRIMENTAL)
    corrected = redistribute(torch.from_numpy(maps), sink_mask(sinks, T), settings.beta).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(maps > 0, maps * np.log(maps), 0.0)
    entropy = (-plogp.sum(axis=-1)).mean(axis=-1).astype(np.float32)
    tokens = ["[CLS]", *[f"w{i}" for i in range(1, T - 1)], "[SEP]"][:T]
    return Analysis(
        text=text if text is not None else f"synthetic text {seed} " + " ".join(tokens[1:-1]),
        tokens=tokens,
        token_ids=[100 + i for i in range(T)],
        model_name=model_name,
        model_id=f"/models/{model_name}",
        model_type="llama" if causal else "bert",
        fingerprint=f"fp{seed % 7:014d}",
        is_causal=causal,
        n_layers=L,
        n_heads=H,
        n_kv_heads=H,
        settings=settings,
        att_received=att_received,
        att_received_layer=received_head.mean(axis=1).astype(np.float32),
        att_received_head=received_head.astype(np.float32),
        alpha=alpha,
        sink_rate=(alpha > settings.epsilon).mean(axis=(0, 1)).astype(np.float32),
        entropy=entropy,
        value_norm=value_norm,
        value_norm_layer=norm_layer,
        value_norm_head=rng.uniform(0.1, 2.0, size=(L, H, T)).astype(np.float32),
        contribution=rng.uniform(0.0, 1.0, size=(L, H, T)).astype(np.float32),
        labels=labels,
        rule=rule.name,
        sink_indices=sinks,
        maps=maps if keep_maps else None,
        corrected_maps=corrected if keep_maps else None,
        timings={"total_s": 0.001 * (seed % 10)},
        warnings=[],
        created_at=created_at,
    )


SCALAR_FIELDS = (
    "text", "tokens", "token_ids", "model_name", "model_id", "model_type", "fingerprint", "is_causal",
    "n_layers", "n_heads", "n_kv_heads", "settings", "labels", "rule", "sink_indices", "version",
    "timings", "warnings", "truncated", "created_at",
)
FLOAT32_FIELDS = (
    "att_received", "att_received_layer", "att_received_head", "alpha", "sink_rate", "entropy",
    "value_norm", "value_norm_layer", "value_norm_head", "contribution",
)


def assert_same_run(original: Analysis, restored: Analysis) -> None:
    """``restored`` is ``original`` as the store keeps it: float32 arrays bit-identical, maps
    bit-identical after float16 rounding, corrected maps equal to ACT on those float16 maps."""
    for name in SCALAR_FIELDS:
        assert getattr(restored, name) == getattr(original, name), name
    for name in FLOAT32_FIELDS:
        want, got = getattr(original, name), getattr(restored, name)
        if want is None:
            assert got is None, name
            continue
        assert got.dtype == np.float32 and got.shape == want.shape, name
        assert got.tobytes() == want.astype(np.float32).tobytes(), name  # bit-exact, NaN/-0.0 included
    if original.maps is None:
        assert restored.maps is None and restored.corrected_maps is None
        return
    stored = original.maps.astype(np.float16).astype(np.float32)
    assert restored.maps.dtype == np.float32
    assert restored.maps.tobytes() == stored.tobytes()
    recomputed = redistribute(torch.from_numpy(stored), sink_mask(original.sink_indices, original.n_tokens),
                              original.settings.beta).numpy()
    assert restored.corrected_maps.tobytes() == recomputed.tobytes()
