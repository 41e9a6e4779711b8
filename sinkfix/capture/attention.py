"""SinkFix's attention function, registered with transformers, and the context it runs in.

Every supported architecture routes attention through ``ALL_ATTENTION_FUNCTIONS``. Loading with
``attn_implementation="sinkfix"`` sends each layer here. The function computes exactly what eager
attention computes, hands the probabilities and values to the active observer (if any), applies
the active intervention (if any), then multiplies by V. The observers that reduce what they are
handed live in ``sinkfix.capture.observers``.

Queries are processed in blocks of rows. Each row's softmax is complete within its block, so the
output equals unblocked eager attention within float32 rounding, and at most ``block x T``
probabilities exist at once: memory grows linearly in T. With one block (short inputs, the
default budget) the arithmetic is op for op that of eager attention, bit for bit.

Everything the function consults besides its arguments lives in context variables (observer,
intervention, block size, extra mask, K/V transform), so concurrent threads sharing one model
never see each other's.
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import torch
from torch import nn

ATTN_NAME = "sinkfix"

# Automatic block size: at most this many probabilities (B x H x block x T) per block. 2^25 float32
# values are 128 MiB; SmolLM2 (9 heads) at T = 4096 then runs in blocks of 910 rows.
DEFAULT_BLOCK_ELEMENTS = 1 << 25


class LayerObserver(Protocol):
    def observe(self, layer: int, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        """One block of query rows of one layer.

        ``probs`` [B, H, q, Tk] after softmax, over the real keys; ``value`` [B, H_kv, Tk, d] before
        any GQA repeat; ``scores`` the logits the softmax was taken of (same shape as probs);
        ``start`` the index of the block's first query row; ``sink_mass`` [B, H, q] the probability
        each row gives to a learned sink (gpt-oss), None for models without one. A layer's blocks
        arrive in order, each once; ``start == 0`` opens a new layer.
        """


class ProbsIntervention(Protocol):
    def apply(self, layer: int, probs: torch.Tensor) -> torch.Tensor:
        """Return the probabilities to multiply with V (same shape). Called per block of query
        rows; every row is complete over its keys, so a row-wise edit needs no row offset."""


KVTransform = Callable[[int | None, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

_observer: contextvars.ContextVar[LayerObserver | None] = contextvars.ContextVar("sinkfix_observer", default=None)
_intervention: contextvars.ContextVar[ProbsIntervention | None] = contextvars.ContextVar(
    "sinkfix_intervention", default=None
)
_query_block: contextvars.ContextVar[int | None] = contextvars.ContextVar("sinkfix_query_block", default=None)
_extra_mask: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("sinkfix_extra_mask", default=None)
_kv_transform: contextvars.ContextVar[KVTransform | None] = contextvars.ContextVar("sinkfix_kv", default=None)


@contextmanager
def _set(var: contextvars.ContextVar, value: object) -> Iterator[object]:
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


def observing(observer: LayerObserver) -> AbstractContextManager:
    return _set(_observer, observer)


def intervening(intervention: ProbsIntervention | None) -> AbstractContextManager:
    return _set(_intervention, intervention)


def blocking(query_block: int | None) -> AbstractContextManager:
    """Process queries in blocks of ``query_block`` rows (None: automatic, from the memory budget)."""
    if query_block is not None and query_block < 1:
        raise ValueError(f"query_block must be >= 1, got {query_block}")
    return _set(_query_block, query_block)


def masking(extra_mask: torch.Tensor | None) -> AbstractContextManager:
    """Add ``extra_mask`` [Tq, Tk] (0 = visible, -inf or the dtype's min = hidden) to every layer's
    logits after the model's own mask: windowed attention, attention with k sinks, ..."""
    return _set(_extra_mask, extra_mask)


def transforming_kv(transform: KVTransform | None) -> AbstractContextManager:
    """Replace each layer's (key, value) [B, H_kv, Tk, d] by ``transform(layer, key, value)`` before
    attention: fake-quantised KV caches, ..."""
    return _set(_kv_transform, transform)



def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    # Same expand-reshape as transformers' repeat_kv, so GQA models stay bit-identical to eager.
    if groups == 1:
        return x
    batch, heads, length, dim = x.shape
    return x[:, :, None, :, :].expand(batch, heads, groups, length, dim).reshape(batch, heads * groups, length, dim)


def block_rows(batch: int, heads: int, n_queries: int, n_keys: int) -> int:
    """How many query rows one block holds: the context's choice, else the memory budget."""
    chosen = _query_block.get()
    if chosen is None:
        chosen = max(1, DEFAULT_BLOCK_ELEMENTS // max(1, batch * heads * n_keys))
    return max(1, min(n_queries, chosen))


def _logits(query: torch.Tensor, key_states: torch.Tensor, mask: torch.Tensor | None, scaling: float,
            extra_mask: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot products plus the model's additive mask (and the context's extra mask)."""
    scores = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if mask is not None:
        scores = scores + mask
    if extra_mask is not None:
        scores = scores + extra_mask.to(scores.dtype)
    return scores


def _probabilities(scores: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax in float32, as eager attention takes it; returns (probs over real keys, learned-sink mass)."""
    return nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(dtype), None


def sinkfix_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eager attention, op for op, with an observation point and an intervention point before ``@ V``.

    Returns the attention weights like eager attention when the queries fit in one block; with
    several blocks the full T x T weights never exist, and None is returned in their place.
    """
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    layer = getattr(module, "layer_idx", None)
    transform = _kv_transform.get()
    if transform is not None:
        key, value = transform(layer, key, value)
    groups = query.shape[1] // key.shape[1]
    key_states = _repeat_kv(key, groups)
    value_states = _repeat_kv(value, groups)
    n_keys = key_states.shape[-2]
    batch, heads, n_queries, _ = query.shape
    rows = block_rows(batch, heads, n_queries, n_keys)
    extra = _extra_mask.get()
    observer = _observer.get()
    intervention = _intervention.get()
    outputs: list[torch.Tensor] = []
    weights = None
    for start in range(0, n_queries, rows):
        stop = min(n_queries, start + rows)
        mask = None if attention_mask is None else attention_mask[:, :, start:stop, :n_keys]
        extra_rows = None if extra is None else extra[start:stop, :n_keys]
        scores = _logits(query[:, :, start:stop], key_states, mask, scaling, extra_rows)
        weights, sink_mass = _probabilities(scores, query.dtype)
        if observer is not None:
            observer.observe(layer, weights, value, scores, start=start, sink_mass=sink_mass)
        del scores  # as in eager, the logits must not outlive the softmax: at long T they are the largest tensor
        if intervention is not None:
            weights = intervention.apply(layer, weights)
        weights = nn.functional.dropout(weights, p=dropout, training=module.training)
        outputs.append(torch.matmul(weights, value_states))
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    output = output.transpose(1, 2).contiguous()
    return output, (weights if rows >= n_queries else None)


_registered = threading.Lock()
_done = False


def register() -> None:
    """Register the attention function and its mask builder once per process.

    The mask builder must be the eager one: without it transformers builds an SDPA-style mask
    (boolean, or None for causal), and additive masking then silently computes non-causal attention.
    """
    global _done
    with _registered:
        if _done:
            return
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask

        AttentionInterface.register(ATTN_NAME, sinkfix_attention)
        AttentionMaskInterface.register(ATTN_NAME, eager_mask)
        _done = True
