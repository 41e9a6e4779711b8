"""Per-layer reductions of attention and values. Pure tensor functions, one layer at a time.

Shapes: ``probs`` is [H, T, T] (queries x keys), ``value`` is [H_kv, T, d].
"""
from __future__ import annotations

import torch


def received(probs: torch.Tensor) -> torch.Tensor:
    """Attention each key receives, averaged over all queries: (1/T) sum_i A[i, j] -> [H, T]."""
    return probs.mean(dim=-2)


def visible_query_mean(probs: torch.Tensor, is_causal: bool) -> torch.Tensor:
    """alpha[h, j]: the mean over the queries that can see j (i >= j when causal) -> [H, T]."""
    if not is_causal:
        return probs.mean(dim=-2)
    n = probs.shape[-1]
    visible = torch.arange(n, 0, -1, dtype=probs.dtype, device=probs.device)
    return probs.sum(dim=-2) / visible


def row_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean over queries of the row entropy in nats -> [H]. One head at a time bounds the temporary."""
    return torch.stack([-torch.special.xlogy(head, head).sum(dim=-1).mean() for head in probs])


def value_norms(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head norms [H_kv, T] and the norm of the full (concatenated) value vector [T]."""
    per_head = value.norm(dim=-1)
    full = per_head.square().sum(dim=0).sqrt()
    return per_head, full


def repeat_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Repeat KV heads (GQA) along dim 0 so each query head sees its own copy."""
    groups = n_heads // x.shape[0]
    return x if groups == 1 else x.repeat_interleave(groups, dim=0)


def contribution(received_: torch.Tensor, value: torch.Tensor, w_o: torch.Tensor) -> torch.Tensor:
    """Norm-based contribution (Kobayashi et al. 2020), averaged over queries -> [H, T].

    mean_i ||A[i, j] * W_O^h v_j|| = received[h, j] * ||W_O^h v_j|| because A >= 0.
    ``w_o`` is the output projection in Linear layout [hidden, H * d].
    """
    n_heads = received_.shape[0]
    v = repeat_heads(value, n_heads)  # [H, T, d]
    w = w_o.reshape(w_o.shape[0], n_heads, -1)  # [hidden, H, d]
    transformed = torch.einsum("ohd,htd->hto", w, v)
    return received_ * transformed.norm(dim=-1)


def sink_rate(alpha: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Fraction of (layer, head) pairs whose alpha for token j exceeds epsilon; alpha is [L, H, T]."""
    return (alpha > epsilon).float().mean(dim=(0, 1))
