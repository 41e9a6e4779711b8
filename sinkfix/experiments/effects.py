"""What an intervention did over a set of texts: per-chunk scores pooled into one ``Evaluation``.

Scores are pooled position-weighted. Chunks are the bootstrap units when there are several; with a
single chunk the CI resamples positions (and says so in ``ci_unit``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sinkfix.experiments.chunks import ChunkRun, ChunkScores
from sinkfix.experiments.intervene import Intervention
from sinkfix.models import LoadedModel

BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Evaluation:
    """The effect of one intervention over a set of texts. NLL fields are None without an LM head."""

    model_name: str
    intervention: Intervention
    n_texts: int
    n_chunks: int
    n_positions: int
    baseline_nll: float | None
    intervened_nll: float | None
    delta_nll: float | None
    delta_nll_ci: tuple[float, float] | None
    ci_unit: str | None
    kl_mean: float | None
    top1_agreement: float | None
    cosine_mean: float
    target_tokens: list[list[int]]  # per chunk
    target_token_text: list[list[str]]
    per_position_kl: list[list[float]] = field(default_factory=list)  # per chunk
    tokens: list[list[str]] = field(default_factory=list)  # per chunk
    random_mass: dict | None = None  # the random control's target and achieved mass (means over chunks)

    def to_json(self, detail: bool = False) -> dict:
        out = {
            "model": self.model_name,
            "target": self.intervention.target,
            "beta": self.intervention.beta,
            "layers": None if self.intervention.layers is None else list(self.intervention.layers),
            "heads": None if self.intervention.heads is None else [list(h) for h in self.intervention.heads],
            "n_texts": self.n_texts,
            "n_chunks": self.n_chunks,
            "n_positions": self.n_positions,
            "baseline_nll": self.baseline_nll,
            "intervened_nll": self.intervened_nll,
            "delta_nll": self.delta_nll,
            "delta_nll_ci95": None if self.delta_nll_ci is None else list(self.delta_nll_ci),
            "ci_unit": self.ci_unit,
            "kl_mean": self.kl_mean,
            "top1_agreement": self.top1_agreement,
            "cosine_mean": self.cosine_mean,
            "target_tokens": self.target_tokens,
            "target_token_text": self.target_token_text,
        }
        if self.random_mass is not None:
            out["random_mass"] = self.random_mass
        if detail:
            out["tokens"] = self.tokens
            out["per_position_kl"] = self.per_position_kl
        return out


def aggregate(loaded: LoadedModel, intervention: Intervention, runs: list[ChunkRun], scores: list[ChunkScores],
              seed: int = 0) -> Evaluation:
    """Pool per-chunk scores, position-weighted, with a paired bootstrap CI on the NLL change."""
    cosine = np.concatenate([s.cosine for s in scores])
    has_lm = scores[0].nll is not None
    base = delta = ci = unit = kl = agree = None
    n_positions = len(cosine)
    if has_lm:
        base_parts = [s.base_nll for s in scores]
        diff_parts = [s.nll - s.base_nll for s in scores]
        n_positions = int(sum(len(p) for p in base_parts))
        base = float(np.concatenate(base_parts).mean())
        delta = float(np.concatenate(diff_parts).mean())
        unit = "chunk" if len(scores) > 1 else "position"
        units = diff_parts if len(scores) > 1 else [np.array([d]) for d in diff_parts[0]]
        ci = paired_bootstrap([u.sum() for u in units], [len(u) for u in units], seed=seed)
        kl = float(np.concatenate([s.kl for s in scores]).mean())
        agree = float(np.concatenate([s.agree for s in scores]).mean())
    tokenizer = loaded.tokenizer
    mass = None
    if scores[0].target_mass is not None:
        mass = {
            "target": float(np.mean([s.target_mass for s in scores])),
            "achieved": float(np.mean([s.achieved_mass for s in scores])),
        }
    return Evaluation(
        model_name=loaded.name,
        intervention=intervention,
        n_texts=len({run.chunk.text_index for run in runs}),
        n_chunks=len(runs),
        n_positions=n_positions,
        baseline_nll=base,
        intervened_nll=None if base is None else base + delta,
        delta_nll=delta,
        delta_nll_ci=ci,
        ci_unit=unit,
        kl_mean=kl,
        top1_agreement=agree,
        cosine_mean=float(cosine.mean()),
        target_tokens=[s.targets for s in scores],
        target_token_text=[
            tokenizer.convert_ids_to_tokens([run.chunk.ids[i] for i in s.targets]) for run, s in zip(runs, scores)
        ],
        per_position_kl=[[] if s.kl is None else s.kl.tolist() for s in scores],
        tokens=[tokenizer.convert_ids_to_tokens(list(run.chunk.ids)) for run in runs],
        random_mass=mass,
    )


def paired_bootstrap(sums: Sequence[float], counts: Sequence[int], samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0) -> tuple[float, float]:
    """95% percentile CI of the pooled mean change, resampling whole units (chunks or texts) with
    replacement. Each unit contributes the sum of its per-position changes and its position count."""
    sums_arr, counts_arr = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums_arr), size=(samples, len(sums_arr)))
    means = sums_arr[picks].sum(axis=1) / counts_arr[picks].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
