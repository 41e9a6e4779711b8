"""``pyramidkv``: SnapKV's scores with kvpress's per-layer budgets (a pyramid, beta = 20).

Lower layers keep more keys, higher ones fewer, the mean over layers matching the ratio. When the
pyramid would not fit (its smallest budget below the window, e.g. ratio 0.75 at T = 1,024 or 2,048
with w = 64), kvpress falls back to SnapKV's uniform budget ``round(T * (1 - ratio))``, and so does
this press. Layers then keep different numbers of keys, which decoding must handle (kvpress 0.5.5's
answer step did not: its mask was sized from layer 0's cache).
"""
from __future__ import annotations

from dataclasses import dataclass

from sinkfix.experiments.evict.presses.snapkv import WINDOW, SnapKV

BETA = 20


def layer_budget(n_tokens: int, ratio: float, layer: int, n_layers: int, window: int = WINDOW,
                 beta: float = BETA) -> int:
    """kvpress's PyramidKVPress.get_layer_budget (the keys layer ``layer`` keeps)."""
    capacity = window + n_tokens * (1 - ratio)
    low = (capacity - window) / beta
    high = (capacity - window) * 2 - low
    if high >= n_tokens - window:
        high = n_tokens - window
        low = (capacity - window) * 2 - high
    if not n_tokens >= high >= low >= window or n_layers < 2:
        return round(n_tokens * (1 - ratio))
    step = (high - low) / (n_layers - 1)
    return round(high - layer * step)


@dataclass(frozen=True)
class PyramidKV(SnapKV):
    name = "pyramidkv"
    beta: float = BETA

    def budget(self, n_tokens: int, ratio: float, layer: int, n_layers: int) -> int:
        if ratio == 0:
            return n_tokens
        return max(1, min(n_tokens, layer_budget(n_tokens, ratio, layer, n_layers, WINDOW, self.beta)))
