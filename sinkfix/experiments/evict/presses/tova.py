"""``tova``: the last context query's attention, averaged over all the layer's query heads.

As kvpress does it, the mean is over every query head of the layer, so each KV head keeps the same
set; the last key (the query's own) gets the highest score found, so it is always kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from sinkfix.experiments.evict.presses.base import LayerStats, Press


@dataclass(frozen=True)
class TOVA(Press):
    name = "tova"
    needs = ("last",)

    def score(self, stats: LayerStats) -> torch.Tensor:
        row = stats.last[:, :-1].mean(dim=0)  # [T - 1], the last query's row averaged over heads
        scores = row.expand(stats.n_kv_heads, -1)
        return F.pad(scores, (0, 1), value=float(scores.max()))


def reference(attentions: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """From the dense probabilities [B, H, T, T]: the last row without its own key, head mean, repeated."""
    scores = attentions[..., -1:, :-1].mean(dim=1).repeat(1, keys.shape[1], 1)
    return F.pad(scores, (0, 1), value=scores.max().item())
