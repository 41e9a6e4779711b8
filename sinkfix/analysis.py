"""The ``Analysis`` result and the ``analyze()`` pipeline: one forward pass, reduced layer by layer."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch

from . import __version__, classify, metrics
from .capture import SinkObserver, observing
from .errors import InputError
from .models import LoadedModel, get_model, model_inputs
from .redistribute import redistribute, sink_mask
from .settings import AnalysisSettings


@dataclass(frozen=True)
class Analysis:
    """Everything one analysis found. Arrays are numpy float32; L layers, H heads, T tokens.

    ``maps`` (and the corrected and mean maps) are kept only when T <= settings.map_token_limit.
    """

    text: str
    tokens: list[str]
    token_ids: list[int]
    model_name: str
    model_id: str
    model_type: str
    fingerprint: str
    is_causal: bool
    n_layers: int
    n_heads: int
    n_kv_heads: int
    settings: AnalysisSettings
    att_received: np.ndarray  # [T]
    att_received_layer: np.ndarray  # [L, T]
    att_received_head: np.ndarray  # [L, H, T]
    alpha: np.ndarray  # [L, H, T] visible-query mean
    sink_rate: np.ndarray  # [T] at settings.epsilon
    entropy: np.ndarray  # [L, H] mean row entropy, nats
    value_norm: np.ndarray  # [T] at settings.layer, divided by its max
    value_norm_layer: np.ndarray  # [L, T] raw norm of the full value vector
    value_norm_head: np.ndarray  # [L, H_kv, T] raw per-head norms
    contribution: np.ndarray | None  # [L, H, T] norm-based (Kobayashi), mean over queries
    labels: list[str]
    rule: str
    sink_indices: list[int]  # the set the correction redistributes away from
    maps: np.ndarray | None  # [L, H, T, T]
    corrected_maps: np.ndarray | None  # [L, H, T, T]
    version: str = __version__
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    created_at: str = ""
    run_id: int | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def mean_map(self) -> np.ndarray | None:
        """A-bar: attention averaged over layers and heads [T, T]."""
        return None if self.maps is None else self.maps.mean(axis=(0, 1))

    @property
    def corrected_mean_map(self) -> np.ndarray | None:
        return None if self.corrected_maps is None else self.corrected_maps.mean(axis=(0, 1))

    def label_counts(self) -> dict[str, int]:
        return {label: self.labels.count(label) for label in classify.LABELS}

    def head_table(self) -> list[dict]:
        """One row per (layer, head): the top sink (by alpha), its alpha, entropy and token-0 share."""
        rows = []
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                alpha = self.alpha[layer, head]
                top = int(alpha.argmax())
                rows.append(
                    {
                        "layer": layer,
                        "head": head,
                        "top_token": top,
                        "top_token_text": self.tokens[top],
                        "top_alpha": float(alpha[top]),
                        "entropy": float(self.entropy[layer, head]),
                        "token0_share": float(self.att_received_head[layer, head, 0]),
                        "top_contribution_share": _share(self.contribution, layer, head, top),
                    }
                )
        return rows

    def token_table(self) -> list[dict]:
        """One row per token: the per-token CSV."""
        return [
            {
                "index": i,
                "token": token,
                "att_received": float(self.att_received[i]),
                "value_norm": float(self.value_norm[i]),
                "sink_rate": float(self.sink_rate[i]),
                "label": self.labels[i],
            }
            for i, token in enumerate(self.tokens)
        ]

    def to_seed_json(self) -> dict:
        """The seed prototype's five fields (plus ``run_id`` once stored)."""
        out: dict = {
            "token_list": list(self.tokens),
            "classifications": list(self.labels),
            "att_received_scores": self.att_received.tolist(),
            "value_norms": self.value_norm.tolist(),
            "corrected_att_scores": None if self.corrected_maps is None else self.corrected_maps.tolist(),
        }
        if self.corrected_maps is None:
            out["note"] = (
                f"corrected_att_scores is null: the input has {self.n_tokens} tokens, above the map limit of "
                f"{self.settings.map_token_limit}; raise map_token_limit to keep the full L x H x T x T maps"
            )
        if self.run_id is not None:
            out["run_id"] = self.run_id
        return out


def _share(contribution: np.ndarray | None, layer: int, head: int, token: int) -> float | None:
    if contribution is None:
        return None
    row = contribution[layer, head]
    total = float(row.sum())
    return float(row[token]) / total if total > 0 else 0.0


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
    encoded, n_total = _tokenize(loaded, text, limit)
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
    return dataclasses.replace(result, timings=timings)


def _tokenize(loaded: LoadedModel, text: str, limit: int) -> tuple[dict, int]:
    """Tokenize once; only a text over the limit is tokenized again, truncated with its special tokens."""
    encoded = loaded.tokenizer(text, return_tensors="pt")
    n_total = encoded["input_ids"].shape[1]
    if n_total > limit:
        encoded = loaded.tokenizer(text, return_tensors="pt", truncation=True, max_length=limit)
    return encoded, n_total


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
    )


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
