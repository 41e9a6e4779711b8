"""``h2o``: kvpress's ObservedAttentionPress, from SinkFix's own statistics.

A key's score is the attention it receives from the context's queries divided by how many of them
see it (T - j under a causal mask), averaged over its KV head's group of query heads: exactly
SinkFix's visible-query mean α. The prefill computes α block by block on the CPU (or with the fused
kernel's column sums on a GPU), never as a T x T tensor; kvpress needs eager attention's full maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sinkfix.experiments.evict.presses.base import LayerStats, Press, group_mean


@dataclass(frozen=True)
class H2O(Press):
    name = "h2o"
    needs = ("alpha",)

    def score(self, stats: LayerStats) -> torch.Tensor:
        return group_mean(stats.alpha, stats.n_kv_heads)


def reference(attentions: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """From the dense probabilities [B, H, T, T]: column sums over queries, / (T - j), group mean."""
    batch, kv_heads, n, _ = keys.shape
    scores = attentions.sum(dim=2) / torch.arange(n, 0, -1, dtype=attentions.dtype)
    return scores.view(batch, kv_heads, -1, n).mean(dim=2)
