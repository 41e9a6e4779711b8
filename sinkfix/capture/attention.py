"""SinkFix's attention function, registered with transformers, and the per-layer observer.

Every supported architecture routes attention through ``ALL_ATTENTION_FUNCTIONS``. Loading with
``attn_implementation="sinkfix"`` sends each layer here. The function computes exactly what eager
attention computes, hands the probabilities and values to the active observer (if any), applies
the active intervention (if any), then multiplies by V. The observers that reduce what they are
handed live in ``sinkfix.capture.observers``. Observers and interventions live in
context variables, so concurrent threads sharing one model never see each other's.
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch
from torch import nn

ATTN_NAME = "sinkfix"


class LayerObserver(Protocol):
    def observe(self, layer: int, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor) -> None:
        """``probs`` [B, H, Tq, Tk] after softmax; ``value`` [B, H_kv, Tk, d] before any GQA repeat;
        ``scores`` the masked logits the softmax was taken of (same shape as probs)."""


class ProbsIntervention(Protocol):
    def apply(self, layer: int, probs: torch.Tensor) -> torch.Tensor:
        """Return the probabilities to multiply with V (same shape)."""


_observer: contextvars.ContextVar[LayerObserver | None] = contextvars.ContextVar("sinkfix_observer", default=None)
_intervention: contextvars.ContextVar[ProbsIntervention | None] = contextvars.ContextVar(
    "sinkfix_intervention", default=None
)


@contextmanager
def observing(observer: LayerObserver) -> Iterator[LayerObserver]:
    token = _observer.set(observer)
    try:
        yield observer
    finally:
        _observer.reset(token)


@contextmanager
def intervening(intervention: ProbsIntervention | None) -> Iterator[None]:
    token = _intervention.set(intervention)
    try:
        yield
    finally:
        _intervention.reset(token)


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    # Same expand-reshape as transformers' repeat_kv, so GQA models stay bit-identical to eager.
    if groups == 1:
        return x
    batch, heads, length, dim = x.shape
    return x[:, :, None, :, :].expand(batch, heads, groups, length, dim).reshape(batch, heads * groups, length, dim)


def sinkfix_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention, op for op, with an observation point and an intervention point before ``@ V``."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    groups = query.shape[1] // key.shape[1]
    key_states = _repeat_kv(key, groups)
    value_states = _repeat_kv(value, groups)
    scores = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key_states.shape[-2]]
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    layer = getattr(module, "layer_idx", None)
    observer = _observer.get()
    if observer is not None:
        observer.observe(layer, weights, value, scores)
    del scores  # as in eager, the logits must not outlive the softmax: at long T they are the largest tensor
    intervention = _intervention.get()
    if intervention is not None:
        weights = intervention.apply(layer, weights)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value_states).transpose(1, 2).contiguous()
    return output, weights


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
