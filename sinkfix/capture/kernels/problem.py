"""What the fused kernels compute, and the dense torch reference they are tested against.

One layer's attention as the kernels see it: queries [B, H, T, d], keys [B, H_kv, T, d] and values
[B, H_kv, T, d_v] (GQA: query head h reads KV head h // (H / H_kv), no repeated copy), and a band
of visible keys. Key j is visible from query i of sequence b when

    i - left <= j <= i + right   and   j < key_lengths[b]

which covers every mask the fast path accepts (see ``sinkfix.capture.masks``): causal (right = 0,
left = T - 1), bidirectional (left = right = T - 1), a causal sliding window of w keys
(left = w - 1, right = 0), a bidirectional window (left = right = w), each with right padding.
The reductions count query rows i < row_lengths[b] only: padding rows give nothing (their entropy
and sink mass are 0).

The reference materialises the T x T logits in float64: it is for tests on small shapes only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Problem:
    """Everything besides Q, K and V that decides one layer's probabilities."""

    scale: float
    left: int  # keys at most this far before the query are visible
    right: int  # keys at most this far after the query are visible (0: causal)
    key_lengths: torch.Tensor  # [B] int32: keys from here on are padding, hidden from every row
    row_lengths: torch.Tensor  # [B] int32: query rows counted by the reductions
    softcap: float | None = None  # logits -> tanh(logits / c) * c (Gemma 2)
    sinks: torch.Tensor | None = None  # [B, H, T] float32 learned-sink logits (gpt-oss); a broadcast view is fine


@dataclass(frozen=True)
class Reference:
    lse: torch.Tensor  # [B, H, T] log-sum-exp over the visible keys (and the sink); -inf for a row that sees nothing
    entropy: torch.Tensor  # [B, H, T] row entropy in nats, the sink column included; 0 on padding rows
    sink_mass: torch.Tensor | None  # [B, H, T] probability of the learned sink; 0 on padding rows
    output: torch.Tensor  # [B, T, H, d_v] attention output; 0 for a row that sees nothing
    column_sums: torch.Tensor  # [B, H, T] sum over real rows of each key's probability


def visible(problem: Problem, batch: int, n_queries: int, n_keys: int, device: torch.device | None = None) -> torch.Tensor:
    """Bool [B, 1, Tq, Tk]: which keys each query sees."""
    i = torch.arange(n_queries, device=device)[:, None]
    j = torch.arange(n_keys, device=device)[None, :]
    band = (j >= i - problem.left) & (j <= i + problem.right)
    lengths = problem.key_lengths.to(device=device, dtype=torch.long)
    return band[None, None] & (j[None, None] < lengths[:, None, None, None]).expand(batch, 1, n_queries, n_keys)


def logits(query: torch.Tensor, key: torch.Tensor, problem: Problem) -> torch.Tensor:
    """Float64 logits [B, H, Tq, Tk], soft-capped, -inf where hidden (eager's order: scale, cap, mask)."""
    groups = query.shape[1] // key.shape[1]
    keys = key.double().repeat_interleave(groups, dim=1)
    scores = query.double() @ keys.transpose(-1, -2) * problem.scale
    if problem.softcap is not None:
        scores = torch.tanh(scores / problem.softcap) * problem.softcap
    seen = visible(problem, query.shape[0], query.shape[2], key.shape[2], query.device)
    return scores.masked_fill(~seen, float("-inf"))


def reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, problem: Problem) -> Reference:
    """Both passes at once, from the dense float64 probabilities."""
    scores = logits(query, key, problem)
    batch, heads, n_queries, n_keys = scores.shape
    if problem.sinks is not None:
        column = problem.sinks.double().expand(batch, heads, n_queries)[..., None]
        scores = torch.cat([scores, column], dim=-1)
    lse = torch.logsumexp(scores, dim=-1)
    seen = torch.isfinite(lse)[..., None]
    probs = torch.where(seen, torch.exp(scores - torch.where(seen, lse[..., None], 0.0)), 0.0)
    rows = torch.arange(n_queries, device=query.device)[None, :] < problem.row_lengths.to(query.device)[:, None]
    entropy = -torch.special.xlogy(probs, probs).sum(dim=-1) * rows[:, None, :]
    real = probs[..., :n_keys]
    groups = heads // value.shape[1]
    output = real @ value.double().repeat_interleave(groups, dim=1)
    column_sums = (real * rows[:, None, :, None]).sum(dim=-2)
    return Reference(
        lse=lse, entropy=entropy, sink_mass=None if problem.sinks is None else probs[..., -1] * rows[:, None, :],
        output=output.transpose(1, 2), column_sums=column_sums,
    )
