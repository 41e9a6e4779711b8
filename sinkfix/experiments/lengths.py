"""The context-length sweep: do sinks strengthen with T? (Barbero et al. 2025, arXiv 2504.02732, report
that sinks grow stronger with context length; their experiments vary the *training* context, this sweep
varies the inference context of one trained model.)

For each T in ``lengths`` and each of n corpus windows (``windows.corpus_windows``, cut to T, so every
length sees the same text growing):
- ``sink_rate``: Gu's Sink₁^ε of token 0, the share of (layer, head) pairs with α[l, h, 0] > ε;
- ``first_token_mass``: α[l, h, 0] averaged over layers and heads (the lab's first-token mass);
- ``late_first_token_mass``: A[i, 0] averaged over layers, heads and the *second half* of the queries
  (i >= T/2). α averages over every query, and the first queries see few keys, so they give token 0
  much of their attention whatever the model does; this one asks what the sink holds deep in the context;
- ``token0_norm``: ‖h_l[0]‖ at the layer where it peaks, and ``token0_norm_ratio``, that over the
  median token's norm at the same layer over the window's T tokens.

A causal model's token 0 sees only itself, so its hidden state, and so ``token0_norm``, cannot depend on
T: the sweep reports it to show exactly that (any change would be a bug). And a causal model's first T
query rows are the forward of its first T tokens, so one forward per window at the longest length
gives every shorter length (``onepass``); a bidirectional model, or a tokenizer that appends a token
([SEP]), runs each length on its own.

``trend``: per window, the longest length's value minus the shortest's, with a bootstrap CI over windows;
the verdict says "stronger" or "weaker" only when that CI excludes 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sinkfix.progress import Step
from sinkfix.errors import SettingsError
from sinkfix.experiments import onepass
from sinkfix.experiments.windows import Windows, batch_size, batches, corpus_windows, estimate
from sinkfix.models import LoadedModel
from sinkfix.settings import DEFAULT_EPSILON

DEFAULT_LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
DEFAULT_WINDOWS = 4
METRICS = ("sink_rate", "first_token_mass", "late_first_token_mass", "token0_norm", "token0_norm_ratio")


def resolve_lengths(loaded: LoadedModel, lengths: Sequence[int] | None) -> list[int]:
    """The asked lengths, sorted; by default the powers of two from 64 up to the model's limit."""
    if lengths is None:
        chosen = [t for t in DEFAULT_LENGTHS if t <= loaded.max_tokens]
        return chosen or [loaded.max_tokens]
    chosen = sorted(set(int(t) for t in lengths))
    if not chosen or chosen[0] < 4:
        raise SettingsError("lengths must be whole numbers of at least 4 tokens")
    if chosen[-1] > loaded.max_tokens:
        raise SettingsError(f"length {chosen[-1]} is over {loaded.name}'s limit of {loaded.max_tokens} tokens")
    return chosen


def _values(result: onepass.Pass, b: int, length: int, epsilon: float) -> dict[str, float]:
    """One window's figures on its first ``length`` tokens (the whole pass when it is that long)."""
    alpha = result.token0_alpha(length)[:, b]  # [La, H]
    norms = result.norms[:, b, :length].numpy()  # [L, T]
    peak = int(norms[:, 0].argmax())
    median = float(np.median(norms[peak]))
    late = torch.stack([result.first[layer][b, :, length // 2:length] for layer in result.attention_layers])
    return {"sink_rate": float((alpha > epsilon).float().mean()), "first_token_mass": float(alpha.mean()),
            "late_first_token_mass": float(late.mean()),
            "token0_norm": float(norms[peak, 0]), "token0_norm_ratio": float(norms[peak, 0]) / median if median else None,
            "peak_layer": peak}


def _prefix_reusable(loaded: LoadedModel, windows: Windows) -> bool:
    return loaded.is_causal and not windows.after


def measure(loaded: LoadedModel, windows: Windows, lengths: list[int], epsilon: float,
            progress: Step | None = None) -> dict[int, list[dict]]:
    """{T: one dict of figures per window}."""
    out: dict[int, list[dict]] = {t: [] for t in lengths}
    runs = [lengths[-1]] if _prefix_reusable(loaded, windows) else lengths
    steps = [(t, group) for t in runs for group in batches(windows.at(t), batch_size(t))]
    done = 0
    for run_length, group in steps:
        result = onepass.run(loaded, group)
        targets = [t for t in lengths if t <= run_length] if len(runs) == 1 else [run_length]
        for t in targets:
            out[t] += [_values(result, b, t, epsilon) for b in range(len(group))]
        done += 1
        if progress is not None:
            progress(done, len(steps), f"T = {run_length}")
    return out


@dataclass(frozen=True)
class LengthsResult:
    model: str
    corpus: str
    n_windows: int
    bos: str
    epsilon: float
    lengths: list[dict]  # {"length", metric: {"mean", "ci95", "n"}, "peak_layers": [...]}
    trend: dict
    one_forward: bool  # every length read from one forward per window at the longest length
    notes: list[str] = field(default_factory=list)

    def headline(self) -> float | None:
        """The sink rate at the longest length."""
        return self.lengths[-1]["sink_rate"]["mean"] if self.lengths else None

    def to_json(self) -> dict:
        return {"kind": "lengths", **self.__dict__}


def trend(per_length: dict[int, list[dict]], seed: int = 0) -> dict:
    """Longest minus shortest length, per window, for the sink rate and the first-token mass."""
    lengths = sorted(per_length)
    short, long = per_length[lengths[0]], per_length[lengths[-1]]
    out: dict = {"from": lengths[0], "to": lengths[-1]}
    for metric in ("sink_rate", "first_token_mass", "late_first_token_mass"):
        change = estimate([b[metric] - a[metric] for a, b in zip(short, long)], seed)
        out[metric] = change
        ci = change["ci95"]
        out[f"{metric}_verdict"] = ("not measured (one length)" if lengths[0] == lengths[-1] else
                                    "no interval (one window)" if ci is None else
                                    "stronger" if ci[0] > 0 else "weaker" if ci[1] < 0 else "no clear change")
    return out


def length_sweep(loaded: LoadedModel, text: str, corpus: str, lengths: Sequence[int] | None = None,
                 n_windows: int = DEFAULT_WINDOWS, bos: str = "auto", epsilon: float = DEFAULT_EPSILON,
                 seed: int = 0, progress: Step | None = None) -> LengthsResult:
    """Sink rate, first-token mass and token 0's norm against T, with CIs over ``n_windows`` windows."""
    chosen = resolve_lengths(loaded, lengths)
    windows = corpus_windows(loaded, text, n_windows, chosen[-1], bos)
    per_length = measure(loaded, windows, chosen, epsilon, progress)
    rows = []
    for t in chosen:
        values = per_length[t]
        row: dict = {"length": t, **{m: estimate([v[m] for v in values if v[m] is not None], seed) for m in METRICS}}
        row["peak_layers"] = sorted({v["peak_layer"] for v in values})
        rows.append(row)
    notes = []
    if loaded.is_causal:
        notes.append("causal model: token 0 sees only itself, so its norm is the same at every length by construction")
    return LengthsResult(loaded.name, corpus, n_windows, bos, float(epsilon), rows, trend(per_length, seed),
                         _prefix_reusable(loaded, windows), notes)
