"""The matrix-based (representation) entropy of a layer's hidden states (Skean et al. 2025; Queipo-de-Llano
et al. 2025, "Mix-Compress-Refine"). Pure tensor functions.

For Z [T, d] (one sequence's hidden states at one layer): L2-normalise each row, K = Z Zᵀ / trace(Z Zᵀ),
S = −Σ λᵢ ln λᵢ over K's eigenvalues, in nats. S lies in [0, ln min(T, d)]: 0 when every token points the
same way, ln r when the tokens spread evenly over r orthogonal directions.

The non-zero eigenvalues of Z Zᵀ (T x T) equal those of Zᵀ Z (d x d), so the smaller of the two is
decomposed: at T = 8192 and d = 576 that is a 576 x 576 matrix instead of an 8192 x 8192 one.
"""
from __future__ import annotations

import torch

# Rows shorter than this are left as they are (a zero hidden state has no direction to normalise).
_TINY_NORM = 1e-12


def representation_entropies(hidden: torch.Tensor) -> torch.Tensor:
    """S(Z) in nats for each sequence of ``hidden`` [..., T, d] -> [...] (float64, on the CPU).

    One batched eigendecomposition per call: a layer's sequences together, not one LAPACK call each.
    """
    if hidden.dim() < 2 or hidden.shape[-2] == 0:
        raise ValueError(f"expected hidden states [..., T, d] with T >= 1, got shape {tuple(hidden.shape)}")
    z = hidden.detach().float()
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(_TINY_NORM)
    # The Gram matrix in float32 (the product is the cost), its eigenvalues in float64 (cheap at d x d).
    wide = z.shape[-2] <= z.shape[-1]
    gram = (z @ z.transpose(-1, -2) if wide else z.transpose(-1, -2) @ z).double().cpu()
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(dim=-1)  # = the number of non-zero rows
    eigenvalues = torch.linalg.eigvalsh(gram).clamp_min(0.0)  # rounding can give tiny negatives
    eigenvalues = eigenvalues / eigenvalues.sum(dim=-1, keepdim=True).clamp_min(_TINY_NORM)
    entropy = -torch.special.xlogy(eigenvalues, eigenvalues).sum(dim=-1)
    return torch.where(trace > 0, entropy, torch.zeros_like(entropy))


def representation_entropy(hidden: torch.Tensor) -> float:
    """S(Z) in nats for one sequence's hidden states ``hidden`` [T, d]."""
    if hidden.dim() != 2:
        raise ValueError(f"expected hidden states [T, d], got shape {tuple(hidden.shape)}")
    return float(representation_entropies(hidden))
