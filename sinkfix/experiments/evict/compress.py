"""The one ``compress()``: scores -> the keys each (layer, KV head) keeps -> a pruned copy of the cache.

Every press goes through ``select``: protected keys first (by score among themselves), then the rest
by score, the first ``budget`` of that order kept, returned in position order. Ties keep the earlier
position (a stable sort), where kvpress's ``topk`` leaves the choice open. The prefill's dense cache is
never modified: ``prune`` builds a new ``DynamicCache`` whose layers may hold different numbers of
keys (PyramidKV), which ``decode`` handles.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from sinkfix.experiments.evict import presses as press_registry
from sinkfix.experiments.evict.capture import Prefill
from sinkfix.experiments.evict.presses.base import Press, check_ratio
from sinkfix.experiments.evict.protect import Protection


def select(scores: torch.Tensor, budget: int, protected: torch.Tensor | None = None) -> torch.Tensor:
    """[H_kv, T] scores -> [H_kv, budget] kept positions, ascending, protected keys first."""
    heads, n = scores.shape
    if budget >= n:
        return torch.arange(n).expand(heads, n).clone()
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    if protected is not None and bool(protected.any()):
        flags = torch.gather(protected, -1, order).to(torch.int8)
        order = torch.gather(order, -1, torch.sort(flags, dim=-1, descending=True, stable=True).indices)
    return order[:, :budget].sort(dim=-1).values


@dataclass(frozen=True)
class Kept:
    """Which context keys one (press, ratio, protection) keeps: per layer [H_kv, n_l] positions."""

    press: str
    ratio: float
    protect: str
    n_tokens: int
    index: tuple[torch.Tensor, ...]
    protected: tuple[torch.Tensor, ...]  # per layer [H_kv, T] bool

    @property
    def n_kept(self) -> list[int]:
        return [int(index.shape[-1]) for index in self.index]

    def token0_share(self) -> float:
        """The share of (layer, KV head) pairs that keep the context's first token."""
        kept = [bool(head[0] == 0) for index in self.index for head in index]
        return sum(kept) / len(kept)

    def protected_mean(self) -> float:
        """Protected keys per (layer, KV head), on average."""
        return float(torch.stack([p.sum(dim=-1).float() for p in self.protected]).mean())

    def positions(self) -> dict[int, list[list[int]]]:
        """``{layer: [[sorted positions kept by KV head 0], ...]}``."""
        return {layer: index.tolist() for layer, index in enumerate(self.index)}

    def fingerprint(self) -> bytes:
        """Equal for two selections that keep exactly the same keys in every layer and KV head."""
        digest = hashlib.sha1()
        for index in self.index:
            digest.update(index.numpy().tobytes() + b"|")
        return digest.digest()

    def mask(self) -> torch.Tensor:
        """[L, H_kv, T] bool: kept keys."""
        out = torch.zeros(len(self.index), self.index[0].shape[0], self.n_tokens, dtype=torch.bool)
        for layer, index in enumerate(self.index):
            out[layer].scatter_(-1, index, True)
        return out


def layer_scores(prefill: Prefill, press: Press) -> list[torch.Tensor]:
    """Every layer's [H_kv, T] scores: computed once per prompt and press, shared by every ratio and protection."""
    press.check(prefill.n_tokens, prefill.window_size)
    return [press.score(prefill.layer(layer)) for layer in range(prefill.n_layers)]


def compress(prefill: Prefill, press: str | Press, ratio: float, protect: str | Protection = "none",
             scores: Sequence[torch.Tensor] | None = None) -> Kept:
    """The keys each (layer, KV head) keeps; ratio 0 keeps every key (kvpress leaves the cache as it is)."""
    press = press_registry.make(press)
    ratio = check_ratio(ratio)
    protection = Protection.parse(protect)
    if scores is None:
        scores = layer_scores(prefill, press)
    n, layers = prefill.n_tokens, prefill.n_layers
    indices, protected = [], []
    n_kv_heads = prefill.n_kv_heads
    for layer in range(layers):
        mask = protection.mask(prefill.alpha[layer], n_kv_heads)
        budget = press.budget(n, ratio, layer, layers)
        indices.append(select(scores[layer], budget, mask))
        protected.append(mask)
    return Kept(press.name, ratio, protection.name, n, tuple(indices), tuple(protected))


def prune(cache: DynamicCache, kept: Sequence[Kept], config: object) -> DynamicCache:
    """A new cache, one batch row per selection, holding per layer and KV head only the kept keys and
    values; the selections must share every layer's budget. The original cache stays whole."""
    pruned = DynamicCache(config=config)
    for layer in range(len(kept[0].index)):
        keys, values = cache.layers[layer].keys, cache.layers[layer].values  # [1, H_kv, T, d]
        index = torch.stack([item.index[layer] for item in kept]).to(keys.device)  # [B, H_kv, n]
        gather = index[..., None].expand(-1, -1, -1, keys.shape[-1])
        keys = keys.expand(len(kept), -1, -1, -1).gather(2, gather)
        values = values.expand(len(kept), -1, -1, -1).gather(2, gather)
        slot = pruned.layers[layer]
        slot.lazy_initialization(keys, values)
        slot.keys, slot.values = keys, values  # the gather made them new tensors: no second copy
    return pruned

