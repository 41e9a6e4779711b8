"""Calibrated head search in the style of ACT (Yu et al. 2024).

On a dev split, redistribute in one (layer, head) at a time with the chosen target and beta, and
keep the heads that improve the dev metric. The trials run here one after another, or through a
``scorer`` (``sinkfix.engines.ray_calibrate``: one Ray task per head over model-holding actors). Then evaluate the kept set once on a held-out split,
with a CI, beside both controls (``random`` with matched mass, and ``first``) on the same heads.
Two tasks: STS-B Spearman (sentence encoders, higher is better) and next-token / pseudo NLL
(LMs, lower is better). Kept head sets are saved under a name and used as ``--heads @name``.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sinkfix.errors import SettingsError
from sinkfix.experiments.chunks import DEFAULT_MAX_TOKENS, ChunkRun
from sinkfix.experiments.evaluate import control_arms, evaluate_many, run_chunks
from sinkfix.experiments.intervene import Head, Intervention, head_map, head_mass
from sinkfix.models import LoadedModel
from sinkfix.policy.ownership import Viewer
from sinkfix.progress import Step, counter
from sinkfix.store import Store
from sinkfix.experiments.sts import PairSet, StsData, spearman


# Scores the given heads, one trial each: head -> (dev metric with that head edited, the baseline the
# scorer measured it against). Gains use the scorer's own baseline, so a head that changes nothing
# has a gain of exactly 0 wherever it ran (a Ray worker with other thread counts included).
HeadScorer = Callable[[list[tuple[int, int]]], dict[tuple[int, int], tuple[float, float]]]


@dataclass(frozen=True)
class HeadTrial:
    layer: int
    head: int
    target_mass: float  # attention the target set receives in this head on dev (mean over inputs)
    dev_metric: float
    gain: float  # improvement over the dev baseline (positive is better, whatever the metric)
    kept: bool


@dataclass(frozen=True)
class Calibration:
    """A kept head set and how it was found. ``heldout`` maps arm -> its held-out result JSON."""

    model_name: str
    task: str  # "sts" or "nll"
    metric: str  # "spearman" or "nll"
    intervention: Intervention
    kept_heads: tuple[Head, ...]
    trials: list[HeadTrial]
    dev_baseline: float
    dev_size: int
    heldout_size: int
    heldout: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    name: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "model": self.model_name,
            "task": self.task,
            "metric": self.metric,
            "intervention": self.intervention.to_dict(),
            "kept_heads": [list(h) for h in self.kept_heads],
            "n_tried": len(self.trials),
            "dev_baseline": self.dev_baseline,
            "dev_size": self.dev_size,
            "heldout_size": self.heldout_size,
            "heldout": self.heldout,
            "seconds": self.seconds,
            "trials": [t.__dict__ for t in self.trials],
            "notes": self.notes,
        }


def candidate_heads(loaded: LoadedModel, intervention: Intervention) -> list[Head]:
    """Every (layer, head) the template allows: its layers and heads, else the whole model."""
    chosen = head_map(intervention, loaded.layer_numbers, loaded.n_heads)
    return [(layer, head) for layer, heads in sorted(chosen.items())
            for head in (range(loaded.n_heads) if heads is None else heads)]


def _single(intervention: Intervention, head: Head) -> Intervention:
    return intervention.with_(layers=None, heads=(head,))


def _rank_by_mass(trials_mass: dict[Head, float], max_heads: int | None) -> list[Head]:
    """The heads where the target set receives the most attention come first; keep ``max_heads``."""
    ranked = sorted(trials_mass, key=lambda h: (-trials_mass[h], h))
    return ranked if max_heads is None else ranked[:max_heads]


def calibrate_sts(loaded: LoadedModel, dev: StsData, heldout: StsData | PairSet, intervention: Intervention,
                  max_heads: int | None = None, min_gain: float = 0.0, progress: Step | None = None,
                  scorer: HeadScorer | None = None) -> Calibration:
    """Head search on STS-B dev (Spearman), then the kept set and its controls on ``heldout``
    (its data, or a PairSet already embedded, so a caller scoring more arms embeds it once)."""
    started = time.perf_counter()
    pairs = PairSet(loaded, dev, intervention.norm_layer, progress=progress, observe=True)
    mass = _sts_mass(pairs, intervention, candidate_heads(loaded, intervention))
    heads = _rank_by_mass(mass, max_heads)
    # A head where the target receives nothing cannot change the metric: it is not scored.
    searched = [head for head in heads if mass[head] > 0]
    if scorer is None:
        scores = _score_locally(searched, lambda head: sts_head_value(pairs, intervention, head),
                                pairs.baseline_spearman, "head search (STS dev)", progress)
    else:
        scores = scorer(searched)
    trials = []
    for head in heads:
        value, base = scores.get(head, (pairs.baseline_spearman, pairs.baseline_spearman))
        gain = value - base
        trials.append(HeadTrial(head[0], head[1], mass[head], value, gain, gain > min_gain))
    kept = tuple(sorted((t.layer, t.head) for t in trials if t.kept))
    results: dict[str, dict] = {}
    notes = _notes(len(mass), len(heads), kept)
    if kept:
        test = (heldout if isinstance(heldout, PairSet)
                else PairSet(loaded, heldout, intervention.norm_layer, progress=progress))
        for arm, arm_intervention in control_arms(intervention.with_(layers=None, heads=kept)).items():
            results[arm] = test.score(arm_intervention, progress=progress).to_json()
    n_heldout = len(heldout.data if isinstance(heldout, PairSet) else heldout)
    return Calibration(loaded.name, "sts", "spearman", intervention, kept, trials, pairs.baseline_spearman, len(dev),
                       n_heldout, results, time.perf_counter() - started, notes=notes)


def _sts_mass(pairs: PairSet, intervention: Intervention, heads: list[Head]) -> dict[Head, float]:
    """Mean attention the target set receives in each head, over the dev sentences."""
    sentences = pairs.sentences
    totals = {head: 0.0 for head in heads}
    for batch in sentences.batches:
        for head in heads:
            plan = sentences.plan(batch, _single(intervention, head))
            received = head_mass(batch.stats, plan.heads)  # [B, T]
            totals[head] += float((received * plan.sinks).sum())
    return {head: total / sentences.n for head, total in totals.items()}


def calibrate_nll(loaded: LoadedModel, dev_texts: Sequence[str], heldout_texts: Sequence[str],
                  intervention: Intervention, max_tokens: int = DEFAULT_MAX_TOKENS, max_heads: int | None = None,
                  min_gain: float = 0.0, progress: Step | None = None,
                  scorer: HeadScorer | None = None) -> Calibration:
    """Head search on dev NLL (needs an LM head), then the kept set and its controls on ``heldout_texts``."""
    if loaded.lm_kind is None:
        raise SettingsError(f"{loaded.name} has no LM head, so it has no NLL to calibrate on; use the STS task")
    started = time.perf_counter()
    runs = run_chunks(loaded, dev_texts, max_tokens, intervention.norm_layer)
    mass = _nll_mass(runs, intervention, candidate_heads(loaded, intervention))
    heads = _rank_by_mass(mass, max_heads)
    baseline = nll_baseline(runs, intervention)
    searched = [head for head in heads if mass[head] > 0]
    if scorer is None:
        scores = _score_locally(searched, lambda head: nll_head_value(runs, intervention, head), baseline,
                                "head search (NLL dev)", progress)
    else:
        scores = scorer(searched)
    trials = []
    for head in heads:
        value, base = scores.get(head, (baseline, baseline))
        gain = base - value
        trials.append(HeadTrial(head[0], head[1], mass[head], value, gain, gain > min_gain))
    kept = tuple(sorted((t.layer, t.head) for t in trials if t.kept))
    results: dict[str, dict] = {}
    if kept:
        arms = control_arms(intervention.with_(layers=None, heads=kept))
        evaluations = evaluate_many(loaded, heldout_texts, list(arms.values()), max_tokens, progress=progress)
        results = {arm: e.to_json() for arm, e in zip(arms, evaluations)}
    n_dev = sum(len(run.positions) for run in runs)
    n_heldout = next(iter(results.values()))["n_positions"] if results else 0
    return Calibration(loaded.name, "nll", "nll", intervention, kept, trials, baseline, n_dev, n_heldout, results,
                       time.perf_counter() - started, notes=_notes(len(mass), len(heads), kept))


def sts_head_value(pairs: PairSet, intervention: Intervention, head: Head) -> float:
    """Dev Spearman with ``intervention`` in this one head."""
    return spearman(pairs.cosine(_single(intervention, head))[0], pairs.data.scores)


def nll_baseline(runs: list[ChunkRun], intervention: Intervention) -> float:
    return _pooled(runs, "base_nll", [run.score(run.plan(intervention.with_(beta=1.0))) for run in runs])


def nll_head_value(runs: list[ChunkRun], intervention: Intervention, head: Head) -> float:
    """Pooled dev NLL with ``intervention`` in this one head."""
    single = _single(intervention, head)
    return _pooled(runs, "nll", [run.score(run.plan(single)) for run in runs])


def _score_locally(heads: list[Head], value: Callable[[Head], float], baseline: float, label: str,
                   progress: Step | None) -> dict[Head, tuple[float, float]]:
    scores = {}
    tick = counter(progress, len(heads), label)
    for head in heads:
        scores[head] = (value(head), baseline)
        tick()
    return scores


def _pooled(runs: list[ChunkRun], name: str, scores: list) -> float:
    return float(np.concatenate([getattr(s, name) for s in scores]).mean())


def _nll_mass(runs: list[ChunkRun], intervention: Intervention, heads: list[Head]) -> dict[Head, float]:
    totals = {head: 0.0 for head in heads}
    for run in runs:
        for head in heads:
            plan = run.plan(_single(intervention, head))
            totals[head] += float((head_mass(run.stats, plan.heads) * plan.sinks).sum())
    return {head: total / len(runs) for head, total in totals.items()}


def _notes(n_candidates: int, n_tried: int, kept: tuple[Head, ...]) -> list[str]:
    notes = []
    if n_tried < n_candidates:
        notes.append(f"searched the {n_tried} of {n_candidates} heads where the target receives the most attention")
    if not kept:
        notes.append("no head improved the dev metric, so nothing was evaluated on the held-out split")
    return notes


# ---------------------------------------------------------------- named head sets (in the store)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SettingsError(f"calibration name '{name}' must be letters, digits, '_', '.' or '-' (at most 64)")
    return name


def save(calibration: Calibration, name: str, store: Store | None = None, *, viewer: Viewer) -> int:
    """Store a calibration under ``name`` in the run database as ``viewer``'s (replacing their one of that name)."""
    data = calibration.to_json() | {"name": _check_name(name)}
    return (store or Store()).save_calibration(name, data, viewer=viewer)


def load(name: str, store: Store | None = None, *, viewer: Viewer) -> dict:
    """The calibration ``name`` the viewer may read: their own, else one shared with them."""
    store = store or Store()
    data = store.calibration(_check_name(name), viewer=viewer)
    if data is None:
        known = ", ".join(row["name"] for row in store.calibrations(viewer=viewer)) or "none yet"
        raise SettingsError(f"no stored calibration named '{name}' (stored: {known}); "
                            f"run `python -m sinkfix calibrate --name {name}`")
    return data


def stored(model: str | None = None, store: Store | None = None, *, viewer: Viewer) -> list[dict]:
    """Stored calibrations the viewer may read, newest first, without the per-head trials."""
    return (store or Store()).calibrations(model, viewer=viewer)


def resolve_heads(text: str | None, model_name: str | None = None, *, viewer: Viewer) -> tuple[Head, ...] | None:
    """``--heads`` as given: ``L:H,...``, ``@name`` (a stored calibration the viewer may read), or nothing."""
    from sinkfix.experiments.intervene import parse_heads

    if text is None or not text.strip().startswith("@"):
        return parse_heads(text)
    data = load(text.strip()[1:], viewer=viewer)
    if model_name is not None and data.get("model") != model_name:
        raise SettingsError(f"calibration '{text.strip()[1:]}' was made for {data.get('model')}, not {model_name}")
    heads = tuple(tuple(h) for h in data["kept_heads"])
    if not heads:
        raise SettingsError(f"calibration '{text.strip()[1:]}' kept no heads, so there is nothing to apply")
    return heads  # type: ignore[return-value]

