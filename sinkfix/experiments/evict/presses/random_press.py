"""``random``: a seeded control that keeps keys at random.

Each layer draws its own scores from a generator seeded by (seed, layer), so a sweep is
reproducible and the layers do not all keep the same positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sinkfix.experiments.evict.presses.base import LayerStats, Press


def draw(seed: int, layer: int, n_kv_heads: int, n_tokens: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + layer)
    return torch.rand(n_kv_heads, n_tokens, generator=generator)


@dataclass(frozen=True)
class Random(Press):
    name = "random"
    seed: int = 0

    def score(self, stats: LayerStats) -> torch.Tensor:
        return draw(self.seed, stats.layer, stats.n_kv_heads, stats.n_tokens)


def reference(attentions: torch.Tensor | None, keys: torch.Tensor, seed: int = 0, layer: int = 0) -> torch.Tensor:
    """[B, H_kv, T] uniform draws from the same seeded generator."""
    return draw(seed, layer, keys.shape[1], keys.shape[2])[None].expand(keys.shape[0], -1, -1)
