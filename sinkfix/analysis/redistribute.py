"""ACT redistribution (Yu et al. 2024): move attention away from a sink set, keep rows stochastic.

For a sink set S and beta in [0, 1]:
    A'[i, s] = beta * A[i, s]                                                   for s in S
    A'[i, t] = A[i, t] + (1 - beta) * sum_{s in S} A[i, s] * A[i, t] / sum_{t' not in S} A[i, t']

The same function edits captured maps (post hoc) and runs inside the attention function (in-model).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch


def redistribute(probs: torch.Tensor, sink_mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Apply ACT to attention rows.

    ``probs`` is [..., Tq, Tk]; ``sink_mask`` is a bool tensor broadcastable to [..., 1, Tk].
    Masked (zero) entries stay zero because they are only ever scaled. A row whose visible mass
    lies entirely in S is returned unchanged, since there is nowhere to move it.
    """
    sink_mask = sink_mask.to(torch.bool)
    sink_mass = (probs * sink_mask).sum(dim=-1, keepdim=True)
    # Summed directly, not as total - sink_mass: when a sink holds nearly all of a row (0.999999 in
    # float32) the subtraction cancels, and the rescaled row summed to 1.12 (found by Hypothesis).
    rest_mass = (probs * ~sink_mask).sum(dim=-1, keepdim=True)
    movable = rest_mass > 0
    # Each token's share of the rest (<= 1), then its part of the moved mass: sink_mass / rest_mass
    # as one factor overflowed to inf when the rest was subnormal (found by Hypothesis). The where()
    # guards 0/0 in rows where nothing can move.
    share = probs / torch.where(movable, rest_mass, 1)
    out = torch.where(sink_mask, probs * beta, probs + (1 - beta) * sink_mass * share)
    return torch.where(movable, out, probs).to(probs.dtype)


def sink_mask(indices: Iterable[int], n_tokens: int, include_first: bool = False) -> torch.Tensor:
    """Bool mask over keys. Token 0 is dropped unless ``include_first``: it is a sink the model needs."""
    mask = torch.zeros(n_tokens, dtype=torch.bool)
    for index in indices:
        if not 0 <= index < n_tokens:
            raise IndexError(f"token index {index} is outside 0..{n_tokens - 1}")
        mask[index] = True
    if not include_first:
        mask[0] = False
    return mask
