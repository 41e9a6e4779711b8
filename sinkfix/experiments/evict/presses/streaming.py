"""``streaming``: keep the most recent keys (StreamingLLM's window).

StreamingLLM itself is this press with ``first:4`` protection: the first 4 keys and the last
``n_kept - 4``, exactly the set kvpress's ``StreamingLLMPress(n_sink=4)`` keeps; with ``none`` it is
``n_sink=0``, the plain recent window whose collapse motivated attention sinks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sinkfix.experiments.evict.presses.base import LayerStats, Press


@dataclass(frozen=True)
class Streaming(Press):
    name = "streaming"

    def score(self, stats: LayerStats) -> torch.Tensor:
        positions = torch.arange(stats.n_tokens, dtype=torch.float32)
        return positions.expand(stats.n_kv_heads, -1).clone()


def reference(keys: torch.Tensor, ratio: float, n_sink: int) -> torch.Tensor:
    """kvpress's StreamingLLMPress scores [B, H_kv, T]: 1 for the first ``n_sink`` keys and the recent
    ones, 0 for the ``T - int(T * (1 - ratio))`` keys after the sinks that are pruned."""
    n = keys.shape[2]
    pruned = n - int(n * (1 - ratio))
    scores = torch.ones_like(keys[..., 0])
    scores[:, :, n_sink:n_sink + pruned] = 0
    return scores
