"""Corpus summaries: sink statistics over a named group of runs (one run per input line).

A corpus is analysed with one model and one set of settings, so every run shares ε. With N
inputs (lines; a line repeated in the file counts once per line):

- **Per-head sink rate** ``head_sink_rate[l, h]``: the fraction of the N inputs in which head
  (l, h) has a sink, i.e. some token j has ``α[l,h,j] > ε`` (equivalently, the head's top α
  exceeds ε). ``head_mean_top_alpha[l, h]`` is the mean of that top α over the inputs.
- **Sink token types.** A token occurrence *sinks* when its sink rate ``Sink_j^ε`` (the fraction
  of (l, h) with ``α[l,h,j] > ε``) is above 0, i.e. at least one head gives it α > ε. Occurrences
  are grouped by token text, except that every occurrence at position 0 forms the type
  ``<first token>`` (for BERT-family models that is always [CLS]; ``examples`` names the texts).
  Per type: ``occurrences``, ``sinks`` (occurrences that sink), ``sink_share`` = sinks /
  occurrences, ``inputs`` (inputs in which the type sinks at least once),
  ``mean_sink_rate`` (mean ``Sink_j^ε`` over the sinking occurrences), ``mean_value_norm``
  (mean value_norm, in [0, 1], over the sinking occurrences) and ``detrimental`` (occurrences
  the run's rule labelled detrimental). Types are ranked by sinks, then inputs, then
  mean_sink_rate; the top ``TOP_TOKEN_TYPES`` are kept.
- **Detrimental fraction**: the fraction of the N inputs with at least one token labelled
  detrimental by the run's rule.

Everything is computed from the store's plain per-token and per-head tables, never from blobs.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sinkfix.analysis.classify import DETRIMENTAL

FIRST_TOKEN = "<first token>"
TOP_TOKEN_TYPES = 20


@dataclass(frozen=True)
class RunStats:
    """What a summary needs from one input's run (the store's run_heads / run_tokens rows)."""

    tokens: Sequence[str]
    top_alpha: np.ndarray  # [L, H]: max over tokens of alpha
    sink_rate: Sequence[float]  # [T]
    value_norm: Sequence[float]  # [T]
    labels: Sequence[str]  # [T]


@dataclass(frozen=True)
class TokenType:
    token: str
    occurrences: int
    sinks: int
    inputs: int
    mean_sink_rate: float
    mean_value_norm: float
    detrimental: int
    examples: list[str] = field(default_factory=list)

    @property
    def sink_share(self) -> float:
        return self.sinks / self.occurrences if self.occurrences else 0.0

    def to_dict(self) -> dict:
        return {"token": self.token, "occurrences": self.occurrences, "sinks": self.sinks,
                "sink_share": self.sink_share, "inputs": self.inputs, "mean_sink_rate": self.mean_sink_rate,
                "mean_value_norm": self.mean_value_norm, "detrimental": self.detrimental,
                "examples": list(self.examples)}


@dataclass(frozen=True)
class CorpusSummary:
    n_inputs: int
    epsilon: float
    head_sink_rate: np.ndarray  # [L, H]
    head_mean_top_alpha: np.ndarray  # [L, H]
    token_types: list[TokenType]
    n_detrimental_inputs: int

    @property
    def detrimental_fraction(self) -> float:
        return self.n_detrimental_inputs / self.n_inputs if self.n_inputs else 0.0

    def to_dict(self) -> dict:
        return {
            "n_inputs": self.n_inputs,
            "epsilon": self.epsilon,
            "head_sink_rate": _nullable(self.head_sink_rate),
            "head_mean_top_alpha": _nullable(self.head_mean_top_alpha),
            "token_types": [t.to_dict() for t in self.token_types],
            "n_detrimental_inputs": self.n_detrimental_inputs,
            "detrimental_fraction": self.detrimental_fraction,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> CorpusSummary:
        return cls(
            n_inputs=int(data["n_inputs"]),
            epsilon=float(data["epsilon"]),
            head_sink_rate=np.asarray(data["head_sink_rate"], dtype=float),
            head_mean_top_alpha=np.asarray(data["head_mean_top_alpha"], dtype=float),
            token_types=[TokenType(**{k: v for k, v in t.items() if k != "sink_share"})
                         for t in data["token_types"]],
            n_detrimental_inputs=int(data["n_detrimental_inputs"]),
        )

    @classmethod
    def from_json(cls, text: str) -> CorpusSummary:
        return cls.from_dict(json.loads(text))


def summarize(runs: Sequence[RunStats], epsilon: float, top: int = TOP_TOKEN_TYPES) -> CorpusSummary:
    """The corpus summary of ``runs`` (one per input), as defined in the module docstring."""
    if not runs:
        return CorpusSummary(0, epsilon, np.zeros((0, 0)), np.zeros((0, 0)), [], 0)
    top_alpha = np.stack([np.asarray(r.top_alpha, dtype=float) for r in runs])  # [N, L, H]
    # A hybrid's non-attention layers are NaN rows: no sink rate there, rather than a rate of 0.
    rate = np.where(np.isnan(top_alpha).all(axis=0), np.nan, (top_alpha > epsilon).mean(axis=0))
    return CorpusSummary(
        n_inputs=len(runs),
        epsilon=epsilon,
        head_sink_rate=rate,
        head_mean_top_alpha=top_alpha.mean(axis=0),
        token_types=token_types(runs)[:top],
        n_detrimental_inputs=sum(DETRIMENTAL in r.labels for r in runs),
    )


def token_types(runs: Sequence[RunStats]) -> list[TokenType]:
    """Every token type that sinks at least once, ranked (see the module docstring)."""
    occurrences: Counter[str] = Counter()
    sinks: Counter[str] = Counter()
    detrimental: Counter[str] = Counter()
    inputs: Counter[str] = Counter()
    rates: defaultdict[str, list[float]] = defaultdict(list)
    norms: defaultdict[str, list[float]] = defaultdict(list)
    examples: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for run in runs:
        sank_here: set[str] = set()
        for index, token in enumerate(run.tokens):
            kind = FIRST_TOKEN if index == 0 else token
            occurrences[kind] += 1
            detrimental[kind] += run.labels[index] == DETRIMENTAL
            if run.sink_rate[index] > 0:
                sinks[kind] += 1
                rates[kind].append(float(run.sink_rate[index]))
                norms[kind].append(float(run.value_norm[index]))
                examples[kind][token] += 1
                sank_here.add(kind)
        inputs.update(sank_here)
    kinds = sorted(sinks, key=lambda k: (-sinks[k], -inputs[k], -float(np.mean(rates[k])), k))
    return [
        TokenType(
            token=kind, occurrences=occurrences[kind], sinks=sinks[kind], inputs=inputs[kind],
            mean_sink_rate=float(np.mean(rates[kind])), mean_value_norm=float(np.mean(norms[kind])),
            detrimental=detrimental[kind], examples=[text for text, _ in examples[kind].most_common(3)],
        )
        for kind in kinds
    ]


def _nullable(values: np.ndarray) -> list:
    """NaN (a hybrid's non-attention layer) as None, so the JSON stays standard."""
    return np.where(np.isnan(values), None, values).tolist() if values.size else values.tolist()


def run_stats_from_rows(head_rows: Sequence[dict], token_rows: Sequence[dict]) -> list[RunStats]:
    """RunStats per input from the store's corpus rows (see Store.corpus_head_rows / corpus_token_rows),
    both ordered by line_no; keyed by line_no so a run listed on two lines counts twice."""
    heads: defaultdict[int, list[dict]] = defaultdict(list)
    for row in head_rows:
        heads[row["line_no"]].append(row)
    tokens: defaultdict[int, list[dict]] = defaultdict(list)
    for row in token_rows:
        tokens[row["line_no"]].append(row)
    stats = []
    for line_no in sorted(heads):
        rows = heads[line_no]
        # Rows are model layer numbers; a hybrid's non-attention layers have no head rows and stay NaN.
        grid = np.full((max(r["layer"] for r in rows) + 1, max(r["head"] for r in rows) + 1), np.nan)
        for r in rows:
            grid[r["layer"], r["head"]] = r["top_alpha"]
        toks = tokens[line_no]
        stats.append(RunStats(
            tokens=[t["token"] for t in toks], top_alpha=grid, sink_rate=[t["sink_rate"] for t in toks],
            value_norm=[t["value_norm"] for t in toks], labels=[t["label"] for t in toks],
        ))
    return stats


def summarize_stored(store, corpus_id: int, epsilon: float, *, viewer) -> CorpusSummary:
    """The summary of a stored corpus the ``viewer`` may read, from plain tables only."""
    return summarize(run_stats_from_rows(store.corpus_head_rows(corpus_id, viewer=viewer),
                                         store.corpus_token_rows(corpus_id, viewer=viewer)),
                     epsilon)


def format_summary(summary: CorpusSummary, name: str = "", heads: int = 8, tokens: int = 10) -> str:
    """A human-readable summary for stderr: the strongest sink heads, the per-head grid and the top types."""
    lines = [
        f"corpus {name}: {summary.n_inputs} inputs, ε = {summary.epsilon:g}",
        f"inputs with a detrimental sink: {summary.n_detrimental_inputs} of {summary.n_inputs} "
        f"({summary.detrimental_fraction:.1%})",
    ]
    rate = summary.head_sink_rate
    if np.isfinite(rate).any():
        lines.append(f"mean per-head sink rate: {np.nanmean(rate):.3f}; heads that sink on every input: "
                     f"{int((rate == 1).sum())} of {int(np.isfinite(rate).sum())}")
        order = np.argsort(-rate, axis=None, kind="stable")[:heads]
        lines.append("heads with the highest sink rate (fraction of inputs with a token alpha > ε):")
        for flat in order:
            layer, head = np.unravel_index(flat, rate.shape)
            lines.append(f"  layer {layer:>2} head {head:>2}: sink rate {rate[layer, head]:.2f}, "
                         f"mean top alpha {summary.head_mean_top_alpha[layer, head]:.3f}")
        lines.append("sink rate per head (rows = layers, columns = heads, in tenths; 9 = 0.9 or more):")
        for layer, row in enumerate(rate):
            cells = "  (not an attention layer)" if np.isnan(row).all() else "".join(
                f"{min(int(v * 10), 9):>2}" for v in row)
            lines.append(f"  L{layer:<3}" + cells)
    lines.append("token types that sink most often:")
    lines.append(f"  {'token':<16} {'sinks':>6} {'of':>6} {'inputs':>6} {'mean Sink_j':>11} "
                 f"{'mean v_norm':>11}  examples")
    for t in summary.token_types[:tokens]:
        lines.append(f"  {t.token[:16]:<16} {t.sinks:>6} {t.occurrences:>6} {t.inputs:>6} {t.mean_sink_rate:>11.3f} "
                     f"{t.mean_value_norm:>11.3f}  {', '.join(t.examples)}")
    if not summary.token_types:
        lines.append("  (no token has alpha > ε in any head)")
    return "\n".join(lines)
