"""The ``analyze()`` pipeline: one forward pass, reduced layer by layer into an ``Analysis``."""
from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone

import numpy as np
import torch

from sinkfix.analysis import classify, metrics
from sinkfix.analysis.redistribute import redistribute, sink_mask
from sinkfix.analysis.result import Analysis
from sinkfix.analysis.tokens import pop_offsets, tokenize
from sinkfix.capture.attention import observing
from sinkfix.capture.observers import SinkObserver
from sinkfix.errors import InputError
from sinkfix.models import LoadedModel, get_model, model_inputs
from sinkfix.settings import AnalysisSettings

__all__ = ["Analysis", "analyze", "validate_text"]


def validate_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty: give at least one word to analyse")
    return text


def analyze(text: str, model: LoadedModel | str, settings: AnalysisSettings | None = None) -> Analysis:
    """Analyse ``text`` on ``model`` (a LoadedModel or a name) in one forward pass."""
    validate_text(text)
    loaded = get_model(model) if isinstance(model, str) else model
    settings = (settings or AnalysisSettings()).resolved(loaded.n_layers)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    limit = min(loaded.max_tokens, settings.max_tokens or loaded.max_tokens)
    encoded, n_total = tokenize(loaded, text, limit, settings.bos)
    offsets = pop_offsets(encoded)
    ids = encoded["input_ids"][0].tolist()
    warnings: list[str] = []
    if n_total > len(ids):
        warnings.append(f"text truncated: {n_total} tokens, limit {limit}; analysed the first {len(ids)}")
    timings["tokenize_s"] = time.perf_counter() - started

    keep_maps = len(ids) <= settings.map_token_limit
    observer = SinkObserver(keep_maps)
    tick = time.perf_counter()
    with torch.inference_mode(), observing(observer):
        loaded.base(**model_inputs(loaded.model, encoded))
    timings["forward_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    result = _assemble(text, ids, loaded, settings, observer, warnings)
    timings["assemble_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started
    return dataclasses.replace(result, timings=timings, offsets=offsets)


def _assemble(
    text: str,
    ids: list[int],
    loaded: LoadedModel,
    settings: AnalysisSettings,
    observer: SinkObserver,
    warnings: list[str],
) -> Analysis:
    received_head = observer.stacked("received")  # [L, H, T]
    alpha = metrics.visible_query_mean(received_head, loaded.is_causal)
    values = observer.stacked("value")  # [L, H_kv, T, d]
    norm_head, norm_layer = metrics.value_norms(values)
    selected = norm_layer[settings.layer]
    value_norm = selected / selected.max()
    att_received = received_head.mean(dim=(0, 1))
    rule = classify.SeedRule(settings.tau_att, settings.tau_norm)
    labels = rule.labels(att_received.numpy(), value_norm.numpy())
    sinks = classify.indices_with(labels, classify.DETRIMENTAL)

    maps = corrected = None
    if observer.keep_maps:
        maps = observer.stacked("maps")
        # With no sink the correction is exactly the identity; skip the pass over L x H x T x T.
        corrected = redistribute(maps, sink_mask(sinks, len(ids)), settings.beta) if sinks else maps
    contribution = None
    if loaded.output_grams is None:
        warnings.append(
            f"norm-based contribution unavailable: no output-projection adapter for {loaded.model_type}"
        )
    else:
        # Layer by layer: batching all layers at once would allocate L x H x T x d temporaries.
        contribution = torch.stack([
            metrics.contribution(received, value, grams)
            for received, value, grams in zip(received_head, values, loaded.output_grams)
        ])

    return Analysis(
        text=text,
        tokens=loaded.tokenizer.convert_ids_to_tokens(ids),
        token_ids=ids,
        model_name=loaded.name,
        model_id=loaded.source,
        model_type=loaded.model_type,
        fingerprint=loaded.fingerprint,
        is_causal=loaded.is_causal,
        n_layers=loaded.n_layers,
        n_heads=loaded.n_heads,
        n_kv_heads=loaded.n_kv_heads,
        settings=settings,
        att_received=_np(att_received),
        att_received_layer=_np(received_head.mean(dim=1)),
        att_received_head=_np(received_head),
        alpha=_np(alpha),
        sink_rate=_np(metrics.sink_rate(alpha, settings.epsilon)),
        entropy=_np(observer.stacked("entropy")),
        value_norm=_np(value_norm),
        value_norm_layer=_np(norm_layer),
        value_norm_head=_np(norm_head),
        contribution=None if contribution is None else _np(contribution),
        labels=labels,
        rule=rule.name,
        sink_indices=sinks,
        maps=None if maps is None else _np(maps),
        corrected_maps=None if corrected is None else _np(corrected),
        warnings=warnings,
        truncated=any(w.startswith("text truncated") for w in warnings),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        corrected_from_rule=corrected is not None,
    )


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
