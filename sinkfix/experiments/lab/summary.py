"""Means and 95% confidence intervals over seeds, in the JSON shape the issue fixes.

``{"variants": {name: {"first_token_mass": {"mean": m, "ci95": [lo, hi]}, "sink_rate": ...,
"massive_ratio": ..., "value_norm_ratio": ..., "val_loss": ...}}, "runs": [...]}``

Each seed's final checkpoint is one observation; the interval is Student's t over seeds
(mean ± t₀.₉₇₅,ₙ₋₁ · s/√n). With 3 seeds t = 4.30, so the intervals are wide and honest. One seed
gives no interval: both ends equal the mean.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SUMMARY_METRICS = ("first_token_mass", "sink_rate", "massive_ratio", "value_norm_ratio", "val_loss")


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean
    from scipy import stats  # scipy loads in ~1 s: only where an interval is taken

    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean - half, mean + half


def mean_ci(values: Sequence[float]) -> dict:
    low, high = t_interval(values)
    return {"mean": float(np.mean(values)), "ci95": [low, high]}


def summarise(runs: Sequence[dict], variants: Sequence[str]) -> dict:
    """The issue's JSON: per variant, each summary metric's mean and CI over seeds; then the runs."""
    out: dict[str, dict] = {}
    for variant in variants:
        finals = [run["final"] for run in runs if run["variant"] == variant]
        if finals:
            out[variant] = {name: mean_ci([f[name] for f in finals]) for name in SUMMARY_METRICS}
    return {"variants": out, "runs": list(runs)}


def extra(runs: Sequence[dict], variant: str, name: str) -> dict | None:
    """A metric outside the summary (learned_sink_mass, register_share, ...) over seeds, if the runs have it."""
    values = [run["final"][name] for run in runs if run["variant"] == variant and name in run["final"]]
    return mean_ci(values) if values else None
