"""What an intervention does to a model's outputs, measured on the same input: the entry points.

For every model: cosine between original and intervened final hidden states. With an LM head:
per-position KL(p_orig || p_mod), top-1 agreement, and the NLL before and after (next-token
cross-entropy for causal LMs; pseudo-log-likelihood for masked LMs, each position masked in turn).
Long texts are split into chunks of at most ``max_tokens``. Chunks are the bootstrap units when
there are several; with a single chunk the CI resamples positions (and says so).

The parts live beside this module: ``experiments.chunks`` (chunking, the forward, one chunk clean
and intervened) and ``experiments.effects`` (the pooled ``Evaluation`` and its bootstrap). Their
public names are importable from here too.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sinkfix.experiments.chunks import (  # noqa: F401  (re-exported: importable from here as before)
    DEFAULT_MAX_TOKENS, PLL_BATCH, Chunk, ChunkRun, ChunkScores, Outputs, chunk_text, forward, special_affixes,
)
from sinkfix.experiments.effects import BOOTSTRAP_SAMPLES, Evaluation, aggregate, paired_bootstrap  # noqa: F401
from sinkfix.experiments.intervene import Intervention
from sinkfix.models import LoadedModel
from sinkfix.progress import Step, counter

DEFAULT_BETAS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)
Progress = Step  # (done, total, what): the experiments' progress callback (sinkfix.progress)


def run_chunks(loaded: LoadedModel, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS,
               norm_layer: int | None = None) -> list[ChunkRun]:
    return [ChunkRun(loaded, chunk, norm_layer) for chunk in chunk_text(loaded, texts, max_tokens)]


def evaluate_many(
    loaded: LoadedModel,
    texts: Sequence[str] | list[ChunkRun],
    interventions: Sequence[Intervention],
    max_tokens: int = DEFAULT_MAX_TOKENS,
    progress: Progress | None = None,
) -> list[Evaluation]:
    """Score several interventions against one clean forward per chunk (they share the baseline)."""
    runs = texts if texts and isinstance(texts[0], ChunkRun) else None
    chunks = None if runs is not None else chunk_text(loaded, texts, max_tokens)
    n_chunks = len(runs) if runs is not None else len(chunks)
    tick = counter(progress, n_chunks * (1 + len(interventions)), "evaluate")
    norm_layer = interventions[0].norm_layer if interventions else None
    built: list[ChunkRun] = []
    per_arm: list[list[ChunkScores]] = [[] for _ in interventions]
    for index in range(n_chunks):
        run = runs[index] if runs is not None else ChunkRun(loaded, chunks[index], norm_layer)
        tick()
        built.append(run)
        for arm, intervention in enumerate(interventions):
            per_arm[arm].append(run.score(run.plan(intervention)))
            tick()
    return [aggregate(loaded, i, built, scores) for i, scores in zip(interventions, per_arm)]


def evaluate(loaded: LoadedModel, texts: str | Sequence[str], intervention: Intervention,
             max_tokens: int = DEFAULT_MAX_TOKENS, progress: Progress | None = None) -> Evaluation:
    """The effect of ``intervention`` on ``texts`` (one string or several)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    return evaluate_many(loaded, texts, [intervention], max_tokens, progress)[0]


def control_arms(intervention: Intervention) -> dict[str, Intervention]:
    """The arm itself plus its two controls on the same heads: random (matched mass) and token 0."""
    arms = {"target": intervention}
    if intervention.target != "random":
        arms["random"] = intervention.with_(target="random", match=intervention.target)
    if intervention.target != "first":
        arms["first"] = intervention.with_(target="first")
    return arms


@dataclass(frozen=True)
class SweepPoint:
    arm: str  # "target", "random" or "first"
    beta: float
    evaluation: Evaluation

    def to_json(self) -> dict:
        e = self.evaluation
        return {
            "arm": self.arm, "target": e.intervention.target, "beta": self.beta, "intervened_nll": e.intervened_nll,
            "delta_nll": e.delta_nll, "delta_nll_ci95": None if e.delta_nll_ci is None else list(e.delta_nll_ci),
            "kl_mean": e.kl_mean, "top1_agreement": e.top1_agreement, "cosine_mean": e.cosine_mean,
        }


def sweep(loaded: LoadedModel, texts: str | Sequence[str], intervention: Intervention,
          betas: Sequence[float] = DEFAULT_BETAS, controls: bool = True, max_tokens: int = DEFAULT_MAX_TOKENS,
          progress: Progress | None = None) -> list[SweepPoint]:
    """The curve from beta = 1 (no change) to 0 (all sink attention moved), beside the controls."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    arms = control_arms(intervention) if controls else {"target": intervention}
    keys = [(name, float(beta)) for name in arms for beta in betas]
    results = evaluate_many(loaded, texts, [arms[n].with_(beta=b) for n, b in keys], max_tokens, progress)
    return [SweepPoint(name, beta, result) for (name, beta), result in zip(keys, results)]
