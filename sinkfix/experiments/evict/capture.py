"""One dense prefill per context, and everything every press reads from it.

During the prefill each layer's attention leaves: the attention each key receives, summed over the
queries (SinkFix's statistics path: blocks of query rows on the CPU, the fused kernel's column sums on
a GPU), from which α, H2O's score and the ``detected`` sinks come; the mean row of the last w queries
(SnapKV, PyramidKV); the last query's row (TOVA). The cache keeps every key (knorm reads their norms).
No T x T tensor is made: rows arrive in blocks, and the causal mask is handed to the attention one
block of rows at a time (``masks.structured`` plus ``_RowsOf``), not as transformers' [1, 1, T, T] mask.

Pruning happens afterwards on copies of the dense cache: in kvpress a layer's keys are pruned after
its attention has run, so the prefill itself is dense and pruning the finished cache is the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from sinkfix.analysis.memory import FIX_FROM_TOKENS, fix_mmap_threshold
from sinkfix.capture import attention, fast_path, hooks, masks
from sinkfix.errors import SettingsError
from sinkfix.experiments.evict.presses.base import LayerStats
from sinkfix.experiments.evict.presses.snapkv import WINDOW
from sinkfix.models import LoadedModel, devices


@dataclass(frozen=True)
class Prefill:
    """A context's dense cache and its per-layer statistics (float32, CPU)."""

    ids: tuple[int, ...]
    cache: DynamicCache
    alpha: torch.Tensor  # [L, H, T]
    window: torch.Tensor  # [L, H, T] mean attention row of the last ``window_size`` queries
    last: torch.Tensor  # [L, H, T] the last query's row
    last_hidden: torch.Tensor  # [D] the last context token's final hidden state (predicts what follows)
    window_size: int
    kernel: str  # "blocked" or "triton"
    kernel_reason: str | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def n_layers(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def n_kv_heads(self) -> int:
        return int(self.cache.layers[0].keys.shape[1])

    def keys(self, layer: int) -> torch.Tensor:
        return self.cache.layers[layer].keys[0]

    def layer(self, layer: int) -> LayerStats:
        return LayerStats(layer, self.n_layers, self.alpha[layer], self.window[layer], self.last[layer],
                          self.keys(layer).detach().float().cpu(), self.window_size)


class EvictObserver:
    """Per layer: column sums of the attention over every query, over the last w queries, and the last row."""

    def __init__(self, n_tokens: int, window: int) -> None:
        self.n_tokens, self.window_size = n_tokens, window
        self.received: dict[int, torch.Tensor] = {}
        self.window: dict[int, torch.Tensor] = {}
        self.last: dict[int, torch.Tensor] = {}

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        """One block of rows [1, H, q, k] (the blocked path); keys k.. receive 0 from it."""
        if layer is None:
            raise RuntimeError("attention module has no layer index; load the model with sinkfix.load_model")
        p = probs[0].float()
        rows, seen = p.shape[-2], p.shape[-1]
        if start == 0:
            self.received[layer] = p.new_zeros(p.shape[0], self.n_tokens)
            self.window[layer] = p.new_zeros(p.shape[0], self.n_tokens)
            self.last[layer] = p.new_zeros(p.shape[0], self.n_tokens)
        self.received[layer][:, :seen] += p.sum(dim=1)
        first = max(start, self.n_tokens - self.window_size)
        if first < start + rows:
            self.window[layer][:, :seen] += p[:, first - start:].sum(dim=1)
        if start + rows == self.n_tokens:
            self.last[layer][:, :seen] = p[:, -1]

    def observe_layer(self, layer: int | None, received: torch.Tensor, entropy: torch.Tensor,
                      sink_mass: torch.Tensor | None, value: torch.Tensor) -> None:
        """A whole layer from the fused kernels: ``received`` [1, H, T] column sums over the real queries."""
        self.received[layer] = received[0].float()

    def rows(self, layer: int, window: torch.Tensor, last: torch.Tensor) -> None:
        """The fused path's window and last rows, computed beside the kernels (``window_rows``)."""
        self.window[layer], self.last[layer] = window, last

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(α, mean window row, last row), each [L, H, T] on the CPU."""
        order = sorted(self.received)
        seen_by = torch.arange(self.n_tokens, 0, -1, dtype=torch.float32)  # key j is seen by T - j queries
        alpha = torch.stack([self.received[i].cpu() for i in order]) / seen_by
        window = torch.stack([self.window[i].cpu() for i in order]) / min(self.window_size, self.n_tokens)
        last = torch.stack([self.last[i].cpu() for i in order])
        return alpha, window, last


def window_rows(query: torch.Tensor, key: torch.Tensor, scaling: float | None, window: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """[H, T] column sums of the last ``window`` causal rows' softmax, and the last row, from Q and K:
    what the fused kernels never form, computed as eager attention does for those rows only."""
    n = key.shape[2]
    groups = query.shape[1] // key.shape[1]
    rows = query[0, :, -window:].float()
    keys = key[0].float().repeat_interleave(groups, dim=0)
    logits = rows @ keys.transpose(1, 2) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    position = torch.arange(n - rows.shape[1], n, device=query.device)[:, None]
    logits = logits.masked_fill(torch.arange(n, device=query.device)[None, :] > position, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return probs.sum(dim=1), probs[:, -1]


class _RowsOf:
    """A structured causal mask read one block of rows at a time, as the attention function slices it."""

    def __init__(self, mask: masks.StructuredMask) -> None:
        self.mask = mask
        self.shape = mask.shape

    def __getitem__(self, index: tuple[slice, slice, slice, slice]) -> torch.Tensor:
        rows, columns = index[2], index[3]
        start = rows.start or 0
        stop = self.mask.n_queries if rows.stop is None else rows.stop
        return self.mask.materialise(start, stop)[..., columns]


class _PrefillAttention:
    """Every layer of the prefill: the fused kernels plus the window rows, or the blocked path with the
    mask handed over row block by row block."""

    def __init__(self, observer: EvictObserver, inner: object | None) -> None:
        self.observer, self.inner = observer, inner

    def __call__(self, module, query, key, value, mask, scaling, dropout, kwargs):
        if self.inner is not None:
            window, last = window_rows(query, key, scaling, self.observer.window_size)
            self.observer.rows(module.layer_idx, window, last)
            return self.inner(module, query, key, value, mask, scaling, dropout, kwargs)
        if isinstance(mask, masks.StructuredMask):
            mask = _RowsOf(mask)
        with attention.fusing(None):
            return attention.sinkfix_attention(module, query, key, value, mask, scaling, dropout, **kwargs)


def require_evictable(loaded: LoadedModel) -> None:
    """Refuse models whose KV cache these presses cannot prune as kvpress does."""
    if loaded.lm_kind != "causal" or not loaded.is_causal:
        raise SettingsError(f"{loaded.name} is not a causal LM with an LM head; KV-cache eviction needs one "
                            "(try smollm2-135m)")
    if getattr(loaded, "attention_layers", None) is not None:
        raise SettingsError(f"{loaded.name} is a hybrid model: its non-attention layers keep a state of every past "
                            "token, so evicting keys does not apply to it")
    config = loaded.model.config
    if getattr(config, "sliding_window", None) and any(
            kind != "full_attention" for kind in getattr(config, "layer_types", None) or ["sliding_attention"]):
        raise SettingsError(f"{loaded.name} has sliding-window layers; eviction here needs full-attention layers")
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "attn_logit_softcapping", None):
        raise SettingsError(f"{loaded.name} soft-caps its logits; the eviction experiments do not model that")


def prefill(loaded: LoadedModel, ids: list[int] | tuple[int, ...], kernel: str = "auto",
            window: int = WINDOW) -> Prefill:
    """Run the context densely once, keeping its cache and every press's statistics."""
    require_evictable(loaded)
    n = len(ids)
    if n < 2:
        raise SettingsError(f"the context must hold at least 2 tokens, got {n}")
    if n >= FIX_FROM_TOKENS:
        fix_mmap_threshold()  # long contexts: freed block temporaries must not pile up in the C heap
    device = devices.input_device(loaded.model)
    choice = fast_path.choose(kernel, device, keep_maps=False)
    inputs = torch.tensor([list(ids)], dtype=torch.long, device=device)

    def forward(observer: EvictObserver) -> tuple[DynamicCache, torch.Tensor]:
        cache = DynamicCache(config=loaded.model.config)
        handler = _PrefillAttention(observer, hooks.fused_handler())
        with torch.inference_mode(), attention.observing(observer), masks.structured([n]), attention.fusing(handler):
            out = loaded.base(input_ids=inputs, cache=cache, use_cache=True)
        return cache, out.last_hidden_state[0, -1]

    (cache, last_hidden), observer, choice = fast_path.observed_forward(
        choice, fast_path.requested(kernel) == "triton", [n], lambda: EvictObserver(n, window), forward)
    alpha, window_mean, last = observer.stacked()
    return Prefill(tuple(int(i) for i in ids), cache, alpha, window_mean, last, last_hidden, window,
                   choice.kernel, choice.reason)
