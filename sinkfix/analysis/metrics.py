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


def row_entropy_from_scores(probs: torch.Tensor, scores: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """The same mean row entropy as ``row_entropy``, without a logarithm per entry.

    With p = softmax(s): ln p_j = s_j - lse, so H = lse - sum_j p_j s_j, and lse = m - ln p_argmax
    where m is the row max. That is one max, one gather and one multiply-sum over T x T, instead
    of a log per entry (the dominant cost of the observer). Masked entries carry p = 0 and a large
    finite negative score, so they add nothing; a layer whose scores hold -inf falls back to
    ``row_entropy``.
    """
    if scratch is None:
        scratch = torch.empty_like(probs[0])
    top, where = scores.max(dim=-1, keepdim=True)
    log_top = probs.gather(-1, where).log()
    if scratch.shape == probs.shape:
        dot = torch.mul(probs, scores, out=scratch).sum(dim=-1)
    else:
        dot = torch.stack([torch.mul(p, s, out=scratch).sum(dim=-1) for p, s in zip(probs, scores)])
    entropy = (top - log_top).squeeze(-1) - dot
    if not torch.isfinite(entropy).all():
        return row_entropy(probs, scratch)
    return entropy.mean(dim=-1)


# A probability above this is a safe anchor for the log-sum-exp: ln p keeps float32's relative precision.
_ANCHOR_FLOOR = 1e-30


def row_entropies(probs: torch.Tensor, scores: torch.Tensor, sink_mass: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's entropy in nats [..., q] (not averaged), for one block of query rows.

    With p = softmax(s): ln p_j = s_j - lse for every j, so H = lse - sum_j p_j s_j. The lse comes
    from one column every row sees (key 0: every query of a causal or bidirectional model sees it)
    as s_0 - ln p_0, which avoids a max over the row; rows where p_0 underflows (sliding windows,
    extra masks) take it from the row's argmax instead. The dot product is an einsum (one read
    of each operand, no T-wide temporary). Masked entries carry p = 0 and a large finite negative
    score, so they add nothing; a block whose scores hold -inf falls back to -sum p ln p.

    With learned sinks (``sink_mass`` [..., q], gpt-oss) the row's distribution has one more
    column: the real keys hold 1 - m, and the entropy includes the sink's -m ln m.
    """
    anchor = probs[..., 0]
    if bool((anchor > _ANCHOR_FLOOR).all()):
        lse = scores[..., 0] - anchor.log()
    else:
        top, where = scores.max(dim=-1, keepdim=True)
        lse = (top - probs.gather(-1, where).log()).squeeze(-1)
    real = 1.0 if sink_mass is None else 1.0 - sink_mass
    entropy = lse * real - torch.einsum("...k,...k->...", probs, scores)
    if not torch.isfinite(entropy).all():
        entropy = torch.special.xlogy(probs, probs).sum(dim=-1).neg()
    return entropy if sink_mass is None else entropy - torch.special.xlogy(sink_mass, sink_mass)


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


def projected_norms(value: torch.Tensor, grams: torch.Tensor) -> torch.Tensor:
    """||W_O^h v_j|| per query head -> [..., H, T]; ``value`` [..., H_kv, T, d], ``grams`` [H, d, d].

    The query-independent half of ``contribution``: computed once per layer as the values arrive,
    so the observer keeps [H, T] per layer instead of the [H_kv, T, d] value vectors.
    """
    v = repeat_heads(value, grams.shape[-3])
    return ((v @ grams) * v).sum(dim=-1).clamp_min(0).sqrt()


def sink_rate(alpha: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Fraction of (layer, head) pairs whose alpha for token j exceeds epsilon; alpha is [L, H, T]."""
    return (alpha > epsilon).float().mean(dim=(0, 1))
