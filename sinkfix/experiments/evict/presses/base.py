"""What every press shares: one layer's prefill statistics, the GQA group mean, kvpress's budget.

A press scores each context key of one layer per KV head, ``score(stats) -> [H_kv, T]`` (higher is
kept), and says how many keys the layer keeps, ``budget(n_tokens, ratio, layer, n_layers)``. Which
keys survive, with sink protection counted inside the budget, is ``compress.select``'s job, the same
for every press. Each press module also holds ``reference``: the same score written the way kvpress
writes it, from the dense attention probabilities [B, H, T, T] and the keys [B, H_kv, T, d], which the
tests compare with ``score`` on small shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from sinkfix.errors import SettingsError


@dataclass(frozen=True)
class LayerStats:
    """What one layer's dense prefill of one context left behind (float32, CPU).

    ``alpha`` is SinkFix's visible-query mean (the attention key j receives, averaged over the T - j
    queries that see it); ``window`` the mean attention row of the last ``window_size`` queries (all T
    keys, 0 where a query cannot see); ``last`` the last query's row; ``keys`` the cached keys, after
    RoPE, as kvpress scores them.
    """

    layer: int
    n_layers: int
    alpha: torch.Tensor  # [H, T]
    window: torch.Tensor  # [H, T]
    last: torch.Tensor  # [H, T]
    keys: torch.Tensor  # [H_kv, T, d]
    window_size: int

    @property
    def n_tokens(self) -> int:
        return int(self.alpha.shape[-1])

    @property
    def n_heads(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def n_kv_heads(self) -> int:
        return int(self.keys.shape[0])


def group_mean(per_head: torch.Tensor, n_kv_heads: int) -> torch.Tensor:
    """[H, ...] -> [H_kv, ...]: the mean over each KV head's group of query heads (heads g*k .. g*k + g - 1,
    transformers' repeat_kv order)."""
    heads = per_head.shape[0]
    return per_head.reshape(n_kv_heads, heads // n_kv_heads, *per_head.shape[1:]).mean(dim=1)


def n_kept(n_tokens: int, ratio: float) -> int:
    """kvpress's ScorerPress budget: ``max(1, int(T * (1 - ratio)))``; ``ratio`` is the fraction removed."""
    return max(1, int(n_tokens * (1 - ratio)))


def check_ratio(ratio: float) -> float:
    if not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise SettingsError(f"the compression ratio is the fraction of keys removed, in [0, 1); got {ratio!r}")
    return float(ratio)


@dataclass(frozen=True)
class Press:
    """A scorer with kvpress's semantics; subclasses set ``name`` and implement ``score``."""

    name: ClassVar[str] = ""
    # The prefill statistics the score reads, so a caller can say what a press needs ("window" needs T > w).
    needs: ClassVar[tuple[str, ...]] = ()

    def score(self, stats: LayerStats) -> torch.Tensor:
        """[H_kv, T]: higher scores are kept."""
        raise NotImplementedError

    def budget(self, n_tokens: int, ratio: float, layer: int, n_layers: int) -> int:
        """Keys layer ``layer`` keeps out of ``n_tokens`` when a fraction ``ratio`` is removed."""
        return n_tokens if ratio == 0 else n_kept(n_tokens, ratio)

    def check(self, n_tokens: int, window_size: int) -> None:
        """Refuse a context this press cannot score (SnapKV's window must fit inside it)."""
        if "window" in self.needs and n_tokens <= window_size:
            raise SettingsError(f"{self.name} scores keys from the last {window_size} queries, so the context must "
                                f"hold more than {window_size} tokens; it has {n_tokens}")
