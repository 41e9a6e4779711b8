"""Attention normalisers other than softmax, as SinkFix's attention function computes them.

A model selects one with the attention keyword ``normaliser=`` (SinkFix's lab models do; see
``sinkfix.experiments.lab``). Each turns the logits s = q·k·scale + mask of one block of query rows
into the weights that multiply V. Masked entries carry the mask's minimum (or -inf) and get weight 0:
- ``sigmoid``: w = σ(s), no normalisation, no bias (Gu et al. 2025's "sigmoid without normalisation");
- ``relu``: w = max(s, 0), no normalisation (Guo et al. 2024's ReLU attention);
- ``softpick``: w = ReLU(eˢ − 1) / (Σ_visible |eˢ − 1| + ε) (Zuhri et al. 2025), computed with
  m = max(row maximum, 0) factored out: ReLU(e^{s−m} − e^{−m}) / (Σ |e^{s−m} − e^{−m}| + ε), ε = 1e-8.
  Their reference factors out the row maximum itself, whose e^{−m} overflows to inf when every logit
  of a row is below −88 (then the forward gives 0 but the gradient NaN: a lab run diverged so); with
  m ≥ 0 nothing overflows, and the ratio is the same. Masked keys are left out of the denominator.

Rows of these weights need not sum to 1. Observers are handed the weights and, in place of logits,
their logarithm (−inf where a weight is 0), so that an entropy reduction reads −Σ w ln w.
"""
from __future__ import annotations

import torch

NORMALISERS = ("softmax", "sigmoid", "relu", "softpick")
SOFTPICK_EPS = 1e-8


def visible(scores: torch.Tensor) -> torch.Tensor:
    """True where a logit is not masked: the additive mask puts the dtype's minimum (or -inf) there."""
    return scores > torch.finfo(scores.dtype).min / 2


def softpick(scores: torch.Tensor) -> torch.Tensor:
    """Zuhri et al.'s softpick over the last dim, masked keys out of the denominator."""
    top = scores.max(dim=-1, keepdim=True).values.clamp_min(0.0)
    shifted = torch.exp(scores - top) - torch.exp(-top)
    denominator = torch.where(visible(scores), shifted.abs(), 0.0).sum(dim=-1, keepdim=True) + SOFTPICK_EPS
    return torch.relu(shifted) / denominator


def weights(scores: torch.Tensor, normaliser: str) -> torch.Tensor:
    """The weights of one of the non-softmax normalisers, in float32 (the caller casts)."""
    s = scores.float()
    if normaliser == "sigmoid":
        return torch.sigmoid(s)
    if normaliser == "relu":
        return torch.relu(s)
    if normaliser == "softpick":
        return softpick(s)
    raise ValueError(f"unknown attention normaliser {normaliser!r}; SinkFix implements {', '.join(NORMALISERS)}")


def log_weights(w: torch.Tensor) -> torch.Tensor:
    """What observers receive in place of logits for these normalisers: ln w (−inf where w = 0)."""
    return w.float().log()
