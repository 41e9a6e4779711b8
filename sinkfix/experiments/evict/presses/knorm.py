"""``knorm``: keep the keys with the smallest L2 norm (kvpress's KnormPress), in float32.

Low key norms go with high attention (Devoto et al. 2024). Sink keys often have unusual norms, so
whether this press keeps token 0 is a real question.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sinkfix.experiments.evict.presses.base import LayerStats, Press


@dataclass(frozen=True)
class KNorm(Press):
    name = "knorm"
    needs = ("keys",)

    def score(self, stats: LayerStats) -> torch.Tensor:
        return -stats.keys.float().norm(dim=-1)


def reference(attentions: torch.Tensor | None, keys: torch.Tensor) -> torch.Tensor:
    """[B, H_kv, T, d] keys -> minus their norm."""
    return -keys.float().norm(dim=-1)
