"""Per-token evidence: redistribute one candidate sink at a time and measure what it does.

The evidence-based label (``classify.EvidenceRule``) replaces the seed's thresholds: a token is
detrimental only if removing it lowers the NLL. Split out of ``evaluate.py``, whose chunk runs and
aggregation it reuses (``experiments.chunks``, ``experiments.effects``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sinkfix.analysis import classify
from sinkfix.experiments.chunks import DEFAULT_MAX_TOKENS, ChunkRun, chunk_text
from sinkfix.experiments.effects import aggregate
from sinkfix.experiments.intervene import Intervention
from sinkfix.models import LoadedModel
from sinkfix.progress import Step, counter


@dataclass(frozen=True)
class TokenEvidence:
    """What redistributing one token alone does (in the chosen heads, at the chosen beta)."""

    index: int
    token: str
    att_received: float
    value_norm: float
    seed_label: str
    delta_nll: float | None
    kl_mean: float | None
    top1_agreement: float | None
    cosine_mean: float
    evidence_label: str | None = None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def token_evidence(loaded: LoadedModel, text: str, intervention: Intervention, top_k: int = 5,
                   max_tokens: int = DEFAULT_MAX_TOKENS, margin: float = 0.0,
                   progress: Step | None = None) -> list[TokenEvidence]:
    """For each candidate sink of the text's first chunk, redistribute it alone and measure.

    Candidates: the ``top_k`` tokens by att_received, plus any the seed rule calls detrimental.
    Token 0 is among them when it qualifies: asking for evidence names it. The evidence-based
    label comes from ``classify.EvidenceRule`` (detrimental only if removing the token lowers NLL).
    """
    run = ChunkRun(loaded, chunk_text(loaded, [text], max_tokens)[0], intervention.norm_layer)
    att = run.stats.att_received()[0].numpy()
    norm = run.stats.normalised_value_norm(intervention.norm_layer)[0].numpy()
    seed = run.stats.seed_labels(intervention.tau_att, intervention.tau_norm, intervention.norm_layer)[0]
    candidates = sorted(set(np.argsort(-att)[:top_k].tolist()) | set(classify.indices_with(seed, classify.DETRIMENTAL)))
    tick = counter(progress, len(candidates), "token evidence")
    rows = []
    tokens = loaded.tokenizer.convert_ids_to_tokens(list(run.chunk.ids))
    for index in candidates:
        target = "tokens:first" if index == 0 else f"tokens:{index}"
        result = aggregate(loaded, intervention, [run], [run.score(run.plan(intervention.with_(target=target)))])
        rows.append(TokenEvidence(
            index, tokens[index], float(att[index]), float(norm[index]), seed[index], result.delta_nll,
            result.kl_mean, result.top1_agreement, result.cosine_mean,
        ))
        tick()
    if loaded.lm_kind is None:
        return rows
    rule = classify.EvidenceRule({r.index: r.delta_nll for r in rows}, margin)
    labels = rule.labels(att, norm)
    return [TokenEvidence(**{**r.__dict__, "evidence_label": labels[r.index]}) for r in rows]


def compare_predictions(loaded: LoadedModel, text: str, intervention: Intervention, position: int, k: int = 5,
                        max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    """Top-k predictions at ``position`` of the first chunk, before and after the intervention."""
    run = ChunkRun(loaded, chunk_text(loaded, [text], max_tokens)[0], intervention.norm_layer)
    return {"position": position, "before": run.top_k(None, position, k), "after": run.top_k(run.plan(intervention), position, k)}
