"""A sweep's numbers: accuracy with Wilson intervals, NLL changes and paired differences with
paired-bootstrap intervals over the same prompts, and the JSON the CLI prints and the store keeps.

``outcomes`` rows are plain dicts ``{"correct": bool | None, "nll": float, "token0_kept": float,
"protected": float, "kept_share": float}``, one per prompt; the dense row of the same prompt gives the
NLL change. For the ppl task there is no exact answer: accuracy is null and the paired differences
compare the NLL instead.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sinkfix.experiments.evaluate import paired_bootstrap

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion (sensible at 0/n and n/n, unlike the normal one)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: Sequence[float], seed: int = 0) -> dict:
    """Mean and a bootstrap 95% interval over the units (prompts); one unit gives a point."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) == 0:
        return {"mean": None, "ci95": None}
    mean = float(data.mean())
    low, high = paired_bootstrap(data, [1] * len(data), seed=seed) if len(data) > 1 else (mean, mean)
    return {"mean": mean, "ci95": [low, high]}


def accuracy(rows: Sequence[dict]) -> dict | None:
    """Share of prompts answered exactly, with its Wilson interval; None for NLL-only tasks."""
    if not rows or rows[0]["correct"] is None:
        return None
    hits = sum(bool(row["correct"]) for row in rows)
    return {"mean": hits / len(rows), "ci95": list(wilson(hits, len(rows))), "n": len(rows)}


def _metric(row: dict) -> float:
    return float(row["nll"]) if row["correct"] is None else float(bool(row["correct"]))


def cell(rows: Sequence[dict], dense: Sequence[dict]) -> dict:
    """One (press, ratio, protection) over every prompt."""
    return {
        "accuracy": accuracy(rows),
        "nll_delta": mean_ci([row["nll"] - base["nll"] for row, base in zip(rows, dense)]),
        "token0_kept": float(np.mean([row["token0_kept"] for row in rows])),
        "protected": float(np.mean([row["protected"] for row in rows])),
        "kept_share": float(np.mean([row["kept_share"] for row in rows])),
    }


def paired(by_protection: dict[str, Sequence[dict]]) -> dict[str, dict]:
    """Every later protection minus every earlier one (``first:4-none``, ``detected-none``,
    ``detected-first:4``), per prompt, with a paired-bootstrap interval over the prompts."""
    names = list(by_protection)
    out = {}
    for j, later in enumerate(names):
        for earlier in names[:j]:
            diffs = [_metric(a) - _metric(b) for a, b in zip(by_protection[later], by_protection[earlier])]
            out[f"{later}-{earlier}"] = {**mean_ci(diffs), "n": len(diffs)}
    return out


def ratio_key(ratio: float) -> str:
    """How a ratio is written as a JSON key: 0.5, 0.75."""
    return f"{ratio:g}"


def tables(prompt_rows: Sequence[dict], presses: Sequence[str], ratios: Sequence[float],
           protections: Sequence[str]) -> tuple[dict, dict, dict]:
    """(results, paired, dense) from the prompts' JSON rows (each with "dense" and "outcomes")."""
    dense = [row["dense"] for row in prompt_rows]
    results: dict = {}
    pairs: dict = {}
    for press in presses:
        for ratio in ratios:
            key = ratio_key(ratio)
            by_protection = {p: [row["outcomes"][press][key][p] for row in prompt_rows] for p in protections}
            results.setdefault(press, {})[key] = {p: cell(rows, dense) for p, rows in by_protection.items()}
            pairs.setdefault(press, {})[key] = paired(by_protection)
    summary = {"accuracy": accuracy(dense), "nll": mean_ci([row["nll"] for row in dense])}
    return results, pairs, summary
