"""``snapkv``: the last w = 64 context queries' attention, averaged, smoothed, window always kept.

kvpress's SnapKVPress: the mean attention row of the window's queries over the keys before the
window, ``avg_pool1d`` with kernel 5 (zero padding counted, as torch does by default), the mean over
each KV head's group, and the window itself padded with the highest score found, so it is kept
whenever the budget holds more than w keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from sinkfix.experiments.evict.presses.base import LayerStats, Press, group_mean

WINDOW = 64
KERNEL = 5


def pooled(window_rows_mean: torch.Tensor, n_kv_heads: int, window: int, kernel: int) -> torch.Tensor:
    """[H, T] mean window rows -> [H_kv, T] SnapKV scores."""
    before = window_rows_mean[:, :-window]
    smooth = F.avg_pool1d(before[None], kernel_size=kernel, padding=kernel // 2, stride=1)[0]
    scores = group_mean(smooth, n_kv_heads)
    return F.pad(scores, (0, window), value=float(scores.max()))


@dataclass(frozen=True)
class SnapKV(Press):
    name = "snapkv"
    needs = ("window",)
    kernel: int = KERNEL

    def score(self, stats: LayerStats) -> torch.Tensor:
        return pooled(stats.window, stats.n_kv_heads, stats.window_size, self.kernel)


def reference(attentions: torch.Tensor, keys: torch.Tensor, window: int = WINDOW, kernel: int = KERNEL) -> torch.Tensor:
    """From the dense probabilities [B, H, T, T], as kvpress's SnapKVPress.score with attentions given."""
    batch, kv_heads, n, _ = keys.shape
    weights = attentions[..., -window:, :-window]
    scores = F.avg_pool1d(weights.mean(dim=-2), kernel_size=kernel, padding=kernel // 2, stride=1)
    scores = scores.view(batch, kv_heads, -1, n - window).mean(dim=2)
    return F.pad(scores, (0, window), value=scores.max().item())
