"""Reductions of attention and values. Pure tensor functions.

Shapes: ``probs`` is [H, T, T] (queries x keys) for one layer. The value-side functions take any
leading dimensions, so they run once over all layers: ``value`` is [..., H_kv, T, d].
"""
from __future__ import annotations

import torch


def received(probs: torch.Tensor) -> torch.Tensor:
    """Attention each key receives, averaged over all queries: (1/T) sum_i A[i, j] -> [H, T]."""
    return probs.mean(dim=-2)


def visible_query_mean(received_: torch.Tensor, is_causal: bool) -> torch.Tensor:
    """alpha[h, j]: the mean over the queries that can see j (i >= j when causal) -> [H, T].

    Derived from ``received`` (the mean over all T queries) to avoid a second pass over T x T:
    a causal key j is seen by T - j queries, so alpha = received * T / (T - j).
    """
    if not is_causal:
        return received_
    n = received_.shape[-1]
    visible = torch.arange(n, 0, -1, dtype=received_.dtype, device=received_.device)
    return received_ * n / visible


def row_entropy(probs: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over queries of the row entropy in nats -> [H].

    ``scratch`` is a reused buffer, either [H, T, T] (one pass) or [T, T] (one head at a time, for
    long inputs): a fresh T x T temporary per call costs more in page faults than the arithmetic.
    """
    if scratch is None:
        scratch = torch.empty_like(probs[0])
    if scratch.shape == probs.shape:
        return torch.special.xlogy(probs, probs, out=scratch).sum(dim=-1).mean(dim=-1).neg()
    return torch.stack([torch.special.xlogy(head, head, out=scratch).sum(dim=-1).mean() for head in probs]).neg()


def value_norms(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head norms [..., H_kv, T] and the norm of the full (concatenated) value vector [..., T]."""
    per_head = value.norm(dim=-1)
    full = per_head.square().sum(dim=-2).sqrt()
    return per_head, full


def repeat_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Repeat KV heads (GQA) along the head dimension (-3) so each query head sees its own copy."""
    groups = n_heads // x.shape[-3]
    return x if groups == 1 else x.repeat_interleave(groups, dim=-3)


def output_grams(w_o: torch.Tensor, n_heads: int) -> torch.Tensor:
    """G[h] = W_O^h^T W_O^h [H, d, d], so that ||W_O^h v||^2 = v^T G[h] v costs d^2, not d * hidden."""
    w = w_o.reshape(w_o.shape[0], n_heads, -1).transpose(0, 1)  # [H, hidden, d]
    return w.transpose(1, 2) @ w


def contribution(received_: torch.Tensor, value: torch.Tensor, grams: torch.Tensor) -> torch.Tensor:
    """Norm-based contribution (Kobayashi et al. 2020), averaged over queries -> [..., H, T].

    mean_i ||A[i, j] * W_O^h v_j|| = received[h, j] * ||W_O^h v_j|| because A >= 0.
    ``grams`` comes from ``output_grams`` (W_O in Linear layout [hidden, H * d]): [..., H, d, d].
    """
    v = repeat_heads(value, received_.shape[-2])  # [..., H, T, d]
    squared = ((v @ grams) * v).sum(dim=-1)
    return received_ * squared.clamp_min(0).sqrt()


def sink_rate(alpha: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Fraction of (layer, head) pairs whose alpha for token j exceeds epsilon; alpha is [L, H, T]."""
    return (alpha > epsilon).float().mean(dim=(0, 1))
