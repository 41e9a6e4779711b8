"""The context the attention function runs in: who observes, what intervenes, how queries are blocked.

Everything ``sinkfix.capture.attention.sinkfix_attention`` consults besides its arguments lives in
these context variables (observer, intervention, block size, extra mask, K/V transform, the fused
path's handler), so concurrent threads sharing one model never see each other's. Callers set them
with the context managers below; ``sinkfix.capture.attention`` re-exports them.
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import torch


class LayerObserver(Protocol):
    def observe(self, layer: int, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        """One block of query rows of one layer.

        ``probs`` [B, H, q, k] after softmax, over the first k <= Tk keys; ``value`` [B, H_kv, Tk, d]
        before any GQA repeat, over all Tk keys; ``scores`` the logits the softmax was taken of (same
        shape as probs). Keys k.. are hidden from every row of the block (causal masks) and receive
        exactly 0 there, so they are skipped; with one block k == Tk always;
        ``start`` the index of the block's first query row; ``sink_mass`` [B, H, q] the probability
        each row gives to a learned sink (gpt-oss), None for models without one. A layer's blocks
        arrive in order, each once; ``start == 0`` opens a new layer.
        """


class ProbsIntervention(Protocol):
    def apply(self, layer: int, probs: torch.Tensor) -> torch.Tensor:
        """Return the probabilities to multiply with V (same shape). Called per block of query
        rows [B, H, q, k], k <= Tk as for observers; every row is complete over its keys, so a
        row-wise edit needs no row offset."""


KVTransform = Callable[[int | None, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

OBSERVER: contextvars.ContextVar[LayerObserver | None] = contextvars.ContextVar("sinkfix_observer", default=None)
INTERVENTION: contextvars.ContextVar[ProbsIntervention | None] = contextvars.ContextVar(
    "sinkfix_intervention", default=None
)
QUERY_BLOCK: contextvars.ContextVar[int | None] = contextvars.ContextVar("sinkfix_query_block", default=None)
EXTRA_MASK: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("sinkfix_extra_mask", default=None)
KV_TRANSFORM: contextvars.ContextVar[KVTransform | None] = contextvars.ContextVar("sinkfix_kv", default=None)
# The fused path's per-layer handler (sinkfix.capture.fast_path), in place of the blocked computation.
FUSED: contextvars.ContextVar[Callable | None] = contextvars.ContextVar("sinkfix_fused", default=None)


@contextmanager
def _set(var: contextvars.ContextVar, value: object) -> Iterator[object]:
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


def observing(observer: LayerObserver) -> AbstractContextManager:
    return _set(OBSERVER, observer)


def intervening(intervention: ProbsIntervention | None) -> AbstractContextManager:
    return _set(INTERVENTION, intervention)


def blocking(query_block: int | None) -> AbstractContextManager:
    """Process queries in blocks of ``query_block`` rows (None: automatic, from the memory budget)."""
    if query_block is not None and query_block < 1:
        raise ValueError(f"query_block must be >= 1, got {query_block}")
    return _set(QUERY_BLOCK, query_block)


def masking(extra_mask: torch.Tensor | None) -> AbstractContextManager:
    """Add ``extra_mask`` [Tq, Tk] (0 = visible, -inf or the dtype's min = hidden) to every layer's
    logits after the model's own mask: windowed attention, attention with k sinks, ..."""
    return _set(EXTRA_MASK, extra_mask)


def transforming_kv(transform: KVTransform | None) -> AbstractContextManager:
    """Replace each layer's (key, value) [B, H_kv, Tk, d] by ``transform(layer, key, value)`` before
    attention: fake-quantised KV caches, ..."""
    return _set(KV_TRANSFORM, transform)


def fusing(handler: Callable | None) -> AbstractContextManager:
    """Send every layer to ``handler(module, query, key, value, mask, scaling, dropout, kwargs)``
    (the fused Triton path) instead of computing it here."""
    return _set(FUSED, handler)


def fused_handler() -> Callable | None:
    """The per-layer handler in force (the fused path's), or None: a wrapper installed with ``fusing``
    reads it first so it can hand each layer on to it (KV-cache eviction's prefill does)."""
    return FUSED.get()


def active_hooks() -> list[str]:
    """The context hooks in force that need this module's probabilities (the fused path cannot serve them)."""
    hooks = [("an intervention", INTERVENTION), ("an experiment's extra mask", EXTRA_MASK),
             ("an experiment's K/V transform", KV_TRANSFORM)]
    return [name for name, var in hooks if var.get() is not None]
