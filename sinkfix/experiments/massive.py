"""Massive activations (Sun et al., COLM 2024) and their link to attention sinks.

The residual stream h at each decoder layer's output: per layer, the largest |h| with its token and
feature dim, the median |h| and their ratio. An entry is *massive* by Sun et al.'s rule when
|h| > 100 and |h| > 1000 x the layer's median |h|. Each token's peak |h| (over layers and dims) is
rank-correlated with its sink rate and value norm from ``sinkfix.analyze`` on the same forward. The
rule and the per-layer summaries are in ``experiments.massive_detect`` (importable from here too).

The intervention sets the massive entries to zero, or to their mean over a reference corpus, at the
first layer where they appear, and measures the next-token NLL change (paired bootstrap CI). The
mean arm needs values from somewhere else than the one chunk it edits: with no reference text and a
text that gives a single chunk, the mean *is* the value, so the change is 0 by construction. That
request is refused (``MEAN_NEEDS_REFERENCE``) instead of reported as a result.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sinkfix.analysis.pipeline import analyze
from sinkfix.analysis.tokens import bos_ids
from sinkfix.capture import residual
from sinkfix.errors import SettingsError
from sinkfix.experiments.chunks import chunk_text, forward
from sinkfix.experiments.effects import paired_bootstrap
from sinkfix.experiments.massive_detect import (  # noqa: F401  (re-exported: importable from here as before)
    ABS_THRESHOLD, RATIO_THRESHOLD, TOP_FEATURES, first_massive_layer, layer_stats, massive_mask, top_activation,
    top_features,
)
from sinkfix.models import LoadedModel
from sinkfix.progress import Step
from sinkfix.settings import AnalysisSettings

DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_CHUNKS = 8
ARMS = ("zero", "mean")
MEAN_NEEDS_REFERENCE = (
    "setting massive activations to their mean needs a reference text: without one the means come from the "
    "evaluated text, which gives a single chunk here, so each mean is the value itself and the change would be "
    "0 by construction. Give a reference text (CLI: --reference-file), a text long enough for two or more "
    "chunks, or run the zero arm only (CLI: --arms zero)"
)


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy.stats import spearmanr  # scipy loads in ~1 s: only where a correlation is taken

    return float(spearmanr(x, y).statistic)


# ---------------------------------------------------------------- the intervention


@dataclass(frozen=True)
class Arm:
    name: str  # "zero" or "mean"
    baseline_nll: float
    intervened_nll: float
    delta_nll: float
    ci95: tuple[float, float]
    ci_unit: str
    n_positions: int

    def to_json(self) -> dict:
        return {**self.__dict__, "ci95": list(self.ci95), "baseline_ppl": float(np.exp(self.baseline_nll)),
                "intervened_ppl": float(np.exp(self.intervened_nll))}


def _chunk_ids(loaded: LoadedModel, texts: Sequence[str], max_tokens: int, max_chunks: int, bos: str) -> list[list[int]]:
    chunks = chunk_text(loaded, list(texts), max_tokens)[:max_chunks]
    return [bos_ids(loaded.tokenizer, list(c.ids), bos) for c in chunks]


def _clean(loaded: LoadedModel, ids: list[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Next-token NLL per position [T-1] and the recorded layer outputs of one clean forward."""
    tensor = torch.tensor([ids])
    with residual.recording(loaded.model) as record:
        out = forward(loaded, tensor, torch.ones_like(tensor))
    return _nll(out.logits, tensor), record


def _nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits[0, :-1].float(), dim=-1)
    return -logp.gather(1, ids[0, 1:, None])[:, 0]


def reference_means(loaded: LoadedModel, chunks: list[list[int]], layer: int, abs_threshold: float,
                    ratio: float) -> dict[int, float]:
    """Per feature dim: the mean value of its massive entries at ``layer`` over the reference chunks.
    A dim that is never massive there gets its mean value at token 0 (where massive activations sit)."""
    flagged: dict[int, list[float]] = {}
    first: dict[int, list[float]] = {}
    for ids in chunks:
        _, record = _clean(loaded, ids)
        h = record[layer][0]
        for token, dim in residual.features_of(massive_mask(h, abs_threshold, ratio)):
            flagged.setdefault(dim, []).append(float(h[token, dim]))
        for dim, value in enumerate(h[0].tolist()):
            first.setdefault(dim, []).append(value)
    return {dim: float(np.mean(flagged.get(dim) or first[dim])) for dim in first}


def intervene_massive(loaded: LoadedModel, chunks: list[list[int]], layer: int, means: dict[int, float],
                      abs_threshold: float = ABS_THRESHOLD, ratio: float = RATIO_THRESHOLD,
                      seed: int = 0, progress: Step | None = None,
                      arms: Sequence[str] = ARMS) -> dict[str, Arm]:
    """ΔNLL of zeroing / mean-setting each chunk's massive entries at ``layer``, paired with its clean forward."""
    diffs: dict[str, list[np.ndarray]] = {name: [] for name in arms}
    bases: list[np.ndarray] = []
    for index, ids in enumerate(chunks):
        base, record = _clean(loaded, ids)
        features = residual.features_of(massive_mask(record[layer][0], abs_threshold, ratio))
        bases.append(base.numpy())
        for name in diffs:
            values = (0.0,) * len(features) if name == "zero" else residual.values_for(features, means)
            edit = residual.ResidualEdit(layer, features, values)
            tensor = torch.tensor([ids])
            with residual.editing(loaded.model, edit):
                nll = _nll(forward(loaded, tensor, torch.ones_like(tensor)).logits, tensor)
            diffs[name].append((nll - base).numpy())
        if progress is not None:
            progress(index + 1, len(chunks), "intervention")
    out = {}
    for name, parts in diffs.items():
        units = parts if len(parts) > 1 else [np.array([d]) for d in parts[0]]
        ci = paired_bootstrap([u.sum() for u in units], [len(u) for u in units], seed=seed)
        base = float(np.concatenate(bases).mean())
        delta = float(np.concatenate(parts).mean())
        out[name] = Arm(name, base, base + delta, delta, ci, "chunk" if len(parts) > 1 else "position",
                        int(sum(len(p) for p in parts)))
    return out


# ---------------------------------------------------------------- the experiment


@dataclass(frozen=True)
class MassiveResult:
    model: str
    bos: str
    tokens: list[str]
    layers: list[dict]  # layer_stats rows
    top: dict  # the largest |h| over all layers
    top_features: list[dict]
    peak: list[list[float]]  # [L][T] max over dims of |h|: the layer x token heatmap
    first_massive_layer: int | None
    massive_dims: list[int]
    link: dict  # per-token peak, sink rate, value norm and their rank correlations
    intervention: dict | None
    notes: list[str] = field(default_factory=list)

    def headline(self) -> float:
        return float(self.top["ratio"])

    def to_json(self) -> dict:
        return dict(self.__dict__)


def massive_activations(model: LoadedModel, text: str, reference: Sequence[str] | None = None,
                        intervene: bool = True, max_tokens: int = DEFAULT_MAX_TOKENS,
                        max_chunks: int = DEFAULT_MAX_CHUNKS, bos: str = "auto",
                        abs_threshold: float = ABS_THRESHOLD, ratio: float = RATIO_THRESHOLD,
                        seed: int = 0, progress: Step | None = None,
                        arms: Sequence[str] = ARMS) -> MassiveResult:
    """Per-layer peaks, Sun et al.'s flags and the link to sinks on ``text`` (its first ``max_tokens``);
    with ``intervene``, the ΔNLL of each of ``arms`` (zero, mean) on up to ``max_chunks`` chunks of it
    (causal LM head needed). Refused before any forward when the mean arm would be empty by construction."""
    chunks: list[list[int]] = []
    if intervene:
        unknown = [a for a in arms if a not in ARMS]
        if unknown or not arms:
            raise SettingsError(f"intervention arms are {' and '.join(ARMS)}; got {', '.join(arms) or 'none'}")
        if model.lm_kind != "causal":
            raise SettingsError(f"the massive-activation intervention measures next-token NLL, so it needs a causal "
                                f"LM head; {model.name} has {'a masked-LM head' if model.lm_kind else 'none'} "
                                f"(use smollm2-135m, or run without the intervention)")
        chunks = _chunk_ids(model, [text], max_tokens, max_chunks, bos)
        if "mean" in arms and reference is None and len(chunks) < 2:
            raise SettingsError(MEAN_NEEDS_REFERENCE)
    settings = AnalysisSettings(max_tokens=max_tokens, bos=bos, map_token_limit=0)
    with residual.recording(model.model) as record:
        analysis = analyze(text, model, settings)
    hidden = residual.stacked(record)  # [L, T, D]
    tokens = analysis.tokens
    layers = layer_stats(hidden, tokens, abs_threshold, ratio)
    top = max(layers, key=lambda row: row["max_abs"])
    first = first_massive_layer(hidden, abs_threshold, ratio)
    dims = sorted({d for h in hidden for _, d in residual.features_of(massive_mask(h, abs_threshold, ratio))})
    peak_token = hidden.abs().amax(dim=(0, 2)).numpy()
    link = {
        "peak_abs": peak_token.tolist(), "sink_rate": analysis.sink_rate.tolist(),
        "value_norm": analysis.value_norm.tolist(), "epsilon": analysis.settings.epsilon,
        "value_norm_layer": analysis.settings.layer,
        "spearman_sink_rate": _rank_correlation(peak_token, analysis.sink_rate),
        "spearman_value_norm": _rank_correlation(peak_token, analysis.value_norm),
        # The rank correlation is diluted by the many tokens with neither; whether the one token with
        # the largest activation is also the one with the highest sink rate says more.
        "top_peak_token": int(peak_token.argmax()), "top_sink_token": int(analysis.sink_rate.argmax()),
    }
    notes = [f"{w}" for w in analysis.warnings]
    intervention = None
    if intervene and first is None:
        notes.append("no entry passes Sun et al.'s rule, so there is nothing to intervene on")
    elif intervene:
        ref_chunks = chunks if reference is None else _chunk_ids(model, reference, max_tokens, max_chunks, bos)
        means = reference_means(model, ref_chunks, first, abs_threshold, ratio) if "mean" in arms else {}
        measured = intervene_massive(model, chunks, first, means, abs_threshold, ratio, seed, progress, arms)
        intervention = {
            "layer": first, "n_chunks": len(chunks), "max_tokens": max_tokens,
            "reference": ("none (zero arm only)" if "mean" not in arms else
                          f"the evaluated text ({len(chunks)} chunks)" if reference is None else
                          f"{len(ref_chunks)} reference chunk{'s' if len(ref_chunks) != 1 else ''}"),
            "mean_values": {str(d): means[d] for d in dims if d in means},
            "arms": {name: arm.to_json() for name, arm in measured.items()},
        }
    return MassiveResult(model.name, bos, tokens, layers, top, top_features(hidden, tokens), hidden.abs().amax(dim=2).tolist(),
                         first, dims, link, intervention, notes)
