"""SinkFix's attention function, registered with transformers, and the context it runs in.

Every supported architecture routes attention through ``ALL_ATTENTION_FUNCTIONS``. Loading with
``attn_implementation="sinkfix"`` sends each layer here. The function computes exactly what eager
attention computes, hands the probabilities and values to the active observer (if any), applies
the active intervention (if any), then multiplies by V. The observers that reduce what they are
handed live in ``sinkfix.capture.observers``.

Queries are processed in blocks of rows. Each row's softmax is complete within its block, so the
output equals unblocked eager attention within float32 rounding, and at most ``block x T``
probabilities exist at once: memory grows linearly in T. With one block (inputs up to 256
queries by default) the arithmetic is op for op that of eager attention, bit for bit.

Everything the function consults besides its arguments lives in context variables
(``sinkfix.capture.hooks``: observer, intervention, block size, extra mask, K/V transform), so
concurrent threads sharing one model never see each other's.
"""
from __future__ import annotations

import threading

import torch
from torch import nn

from sinkfix.capture import hooks, keywords, masks, normalisers
# Re-exported: the hooks' context managers and protocols, and the keyword tables and their error,
# are part of this module's public face.
from sinkfix.capture.hooks import (  # noqa: F401
    KVTransform, LayerObserver, ProbsIntervention, active_hooks, blocking, fused_handler, fusing, intervening, masking,
    observing, transforming_kv,
)
from sinkfix.capture.keywords import ACCEPTED_KEYWORDS, IMPLEMENTED_KEYWORDS, UnsupportedKeywordError  # noqa: F401

ATTN_NAME = "sinkfix"

# Automatic block size: at most this many probabilities (B x H x block x T) per block. 2^23 float32
# values are 32 MiB; for SmolLM2 (9 heads) that caps blocks at 227 rows at T = 4096. A block's logits,
# probabilities and the previous block's probabilities coexist, so this bounds the attention's own
# memory to ~100 MiB at any T (2^25 measured +250 MB over the layer's other activations at T = 4096).
DEFAULT_BLOCK_ELEMENTS = 1 << 23
# Inputs up to this many queries run in one block: eager attention's arithmetic, bit for bit.
SINGLE_BLOCK_QUERIES = 256
# Longer inputs run in blocks of at most this many rows. A causal block computes keys up to its
# last row, so the masked triangle it still computes shrinks with the block: at T = 1024 blocks of
# 128 rows ran 25% faster than the budget's 910, at T = 4096 10% faster than 227 (SmolLM2, CPU).
BLOCK_QUERIES = 128


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    # Same expand-reshape as transformers' repeat_kv, so GQA models stay bit-identical to eager.
    if groups == 1:
        return x
    batch, heads, length, dim = x.shape
    return x[:, :, None, :, :].expand(batch, heads, groups, length, dim).reshape(batch, heads * groups, length, dim)


def block_rows(batch: int, heads: int, n_queries: int, n_keys: int) -> int:
    """How many query rows one block holds: the context's choice, else one block for short inputs
    and blocks of ``BLOCK_QUERIES`` rows (fewer if the memory budget says so) for long ones."""
    chosen = hooks.QUERY_BLOCK.get()
    if chosen is None:
        budget = max(1, DEFAULT_BLOCK_ELEMENTS // max(1, batch * heads * n_keys))
        chosen = n_queries if n_queries <= min(budget, SINGLE_BLOCK_QUERIES) else min(budget, BLOCK_QUERIES)
    return max(1, min(n_queries, chosen))


def _rows(t: torch.Tensor | None, start: int, stop: int, n_queries: int) -> torch.Tensor | None:
    """Rows start:stop of a per-query tensor [..., Tq, x]; one broadcast row stays as it is."""
    if t is None or t.shape[-2] != n_queries or (start == 0 and stop == n_queries):
        return t
    return t[..., start:stop, :]


def key_extent(mask: torch.Tensor | None, extra: torch.Tensor | None, n_keys: int) -> int:
    """How many leading keys one block of query rows can see.

    Past the last column any row of the block sees, every logit carries the mask's minimum and its
    probability underflows to exactly 0, so those keys change nothing and are skipped: a causal
    model's block of rows i..j needs keys 0..j only, which halves the work of a blocked forward.
    A block with a row that sees no key keeps every column, because eager softmax spreads such a
    row evenly over all of them.
    """
    if mask is None:
        mask, extra = extra, None
    if mask is None or not mask.is_floating_point() or (extra is not None and not extra.is_floating_point()):
        return n_keys
    combined = mask if extra is None else mask + extra.to(mask.dtype)
    hidden = torch.finfo(combined.dtype).min / 2  # the dtype's min (or -inf) marks a hidden key
    if not bool((combined.amax(dim=-1) > hidden).all()):
        return n_keys
    columns = (combined.reshape(-1, combined.shape[-1]).amax(dim=0) > hidden).nonzero()
    return int(columns.max()) + 1


def _logits(query: torch.Tensor, key_states: torch.Tensor, mask: torch.Tensor | None, scaling: float,
            extra_mask: torch.Tensor | None, softcap: float | None = None,
            position_bias: torch.Tensor | None = None, fused: bool = False) -> torch.Tensor:
    """Scaled dot products, soft-capped, plus any relative position bias, plus the model's additive
    mask (and the context's extra mask): the order of Gemma 2's and T5's eager attention."""
    if fused:
        return _fused_logits(query, key_states, mask, scaling, extra_mask)
    scores = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if softcap is not None:
        scores = scores / softcap
        scores = torch.tanh(scores)
        scores = scores * softcap
    if position_bias is not None:
        scores = scores + position_bias
    if mask is not None:
        scores = scores + mask
    if extra_mask is not None:
        scores = scores + extra_mask.to(scores.dtype)
    return scores


def _fused_logits(query: torch.Tensor, key_states: torch.Tensor, mask: torch.Tensor | None, scaling: float,
                  extra_mask: torch.Tensor | None) -> torch.Tensor:
    """``query @ key^T * scaling + mask`` as one ``baddbmm`` per sequence, written in place.

    The same arithmetic as ``_logits`` without soft-capping or a position bias, equal within
    float32 rounding but not bit for bit (BLAS applies the scale inside the product), and two
    passes over the block's logits cheaper: the separate scale and mask additions were a quarter
    of a long causal forward. Used only with several query blocks, whose contract is rounding.
    """
    batch, heads, rows, _ = query.shape
    keys = key_states.transpose(2, 3)
    if mask is None:
        scores = torch.matmul(query, keys).mul_(scaling)
    else:
        scores = query.new_empty(batch, heads, rows, keys.shape[-1])
        for b in range(batch):
            torch.baddbmm(mask[b if mask.shape[0] > 1 else 0].to(query.dtype), query[b], keys[b],
                          alpha=scaling, out=scores[b])
    if extra_mask is not None:
        scores += extra_mask.to(scores.dtype)
    return scores


def _probabilities(scores: torch.Tensor, dtype: torch.dtype, sinks: torch.Tensor | None = None,
                   normaliser: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax as eager attention takes it; returns (probs over the real keys, learned-sink mass [B, H, q]).

    Without sinks: softmax in float32, cast to the model dtype. With sink logits (gpt-oss): the
    logit is appended as one more key column, the row maximum is subtracted, the softmax is taken
    in the logits' dtype, and the column is split off again, as gpt-oss's eager attention does.
    The real probabilities then sum to 1 - sink mass. Another ``normaliser`` (sigmoid, relu,
    softpick) gives weights whose rows need not sum to 1, and no sink mass.
    """
    if normaliser is not None:
        return normalisers.weights(scores, normaliser).to(dtype), None
    if sinks is None:
        return nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(dtype), None
    batch, heads, rows, _ = scores.shape
    column = sinks.to(scores.dtype).expand(batch, heads, rows, 1)
    combined = torch.cat([scores, column], dim=-1)
    combined = combined - combined.max(dim=-1, keepdim=True).values
    probs = nn.functional.softmax(combined, dim=-1, dtype=combined.dtype)
    return probs[..., :-1].to(dtype), probs[..., -1]


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
    A keyword that would change the arithmetic and is not implemented raises
    ``UnsupportedKeywordError`` (the post-load probe turns it into a refusal).
    """
    handler = hooks.FUSED.get()
    if handler is not None:
        return handler(module, query, key, value, attention_mask, scaling, dropout, kwargs)
    softcap, sinks, position_bias = keywords.extras(module, kwargs)
    normaliser = keywords.normaliser(module, kwargs, sinks)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    layer = getattr(module, "layer_idx", None)
    transform = hooks.KV_TRANSFORM.get()
    if transform is not None:
        key, value = transform(layer, key, value)
    groups = query.shape[1] // key.shape[1]
    key_states = _repeat_kv(key, groups)
    value_states = _repeat_kv(value, groups)
    n_keys = key_states.shape[-2]
    batch, heads, n_queries, _ = query.shape
    rows = block_rows(batch, heads, n_queries, n_keys)
    extra = hooks.EXTRA_MASK.get()
    observer = hooks.OBSERVER.get()
    intervention = hooks.INTERVENTION.get()
    outputs: list[torch.Tensor] = []
    weights = None
    for start in range(0, n_queries, rows):
        stop = min(n_queries, start + rows)
        mask = None if attention_mask is None else attention_mask[:, :, start:stop, :n_keys]
        extra_rows = None if extra is None else extra[start:stop, :n_keys]
        # One block is eager attention op for op; several skip the keys no row of the block sees.
        keys = n_keys if rows >= n_queries else key_extent(mask, extra_rows, n_keys)
        bias = _rows(position_bias, start, stop, n_queries)
        if keys < n_keys:
            mask = None if mask is None else mask[..., :keys]
            extra_rows = None if extra_rows is None else extra_rows[:, :keys]
            bias = None if bias is None else bias[..., :keys]
        scores = _logits(query[:, :, start:stop], key_states[:, :, :keys], mask, scaling, extra_rows, softcap, bias,
                         fused=rows < n_queries and softcap is None and bias is None)
        weights, sink_mass = _probabilities(scores, query.dtype, _rows(sinks, start, stop, n_queries), normaliser)
        if observer is not None:
            handed = scores if normaliser is None else normalisers.log_weights(weights)  # see capture.normalisers
            observer.observe(layer, weights, value, handed, start=start, sink_mass=sink_mass)
        del scores  # as in eager, the logits must not outlive the softmax: at long T they are the largest tensor
        if intervention is not None:
            weights = intervention.apply(layer, weights)
        weights = nn.functional.dropout(weights, p=dropout, training=module.training)
        outputs.append(torch.matmul(weights.to(value_states.dtype), value_states[:, :, :keys]))
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
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(ATTN_NAME, sinkfix_attention)
        AttentionMaskInterface.register(ATTN_NAME, masks.sinkfix_mask)  # eager_mask unless the fused path runs
        _done = True
