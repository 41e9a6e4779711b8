"""The representation entropy against a direct eigendecomposition of the T x T matrix, on small inputs;
and the layer profile's "where the three change together" reading on hand-made curves."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sinkfix.analysis.representation import representation_entropies, representation_entropy
from sinkfix.experiments.profile import together


def direct_entropy(z: np.ndarray) -> float:
    """The definition, literally: rows L2-normalised, K = Z Zᵀ / tr(Z Zᵀ) (T x T), S = -Σ λ ln λ."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    k = z @ z.T
    k = k / np.trace(k)
    eigenvalues = np.linalg.eigvalsh(k)
    eigenvalues = eigenvalues[eigenvalues > 1e-15]
    return float(-(eigenvalues * np.log(eigenvalues)).sum())


@pytest.mark.parametrize("shape", [(5, 8), (8, 8), (12, 4), (40, 6), (3, 30)])
def test_matches_the_t_by_t_eigenvalues(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        z = rng.normal(size=shape) * rng.uniform(0.1, 50, size=(shape[0], 1))  # rows of very different norms
        assert representation_entropy(torch.tensor(z, dtype=torch.float32)) == pytest.approx(direct_entropy(z), abs=2e-5)


def test_hand_worked_extremes() -> None:
    same_direction = torch.tensor([[1.0, 2.0, 0.0]] * 6) * torch.arange(1, 7)[:, None]
    assert representation_entropy(same_direction) == pytest.approx(0.0, abs=1e-6)
    orthogonal = torch.eye(4) * torch.tensor([3.0, 0.5, 7.0, 1.0])[:, None]
    assert representation_entropy(orthogonal) == pytest.approx(math.log(4), abs=1e-6)
    # Two directions, 3 tokens on one and 1 on the other: K's eigenvalues are 3/4 and 1/4.
    two = torch.tensor([[1.0, 0.0], [2.0, 0.0], [5.0, 0.0], [0.0, 1.0]])
    assert representation_entropy(two) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), abs=1e-6)


def test_batched_equals_one_at_a_time() -> None:
    z = torch.randn(3, 10, 6)
    batched = representation_entropies(z)
    assert batched.shape == (3,)
    for b in range(3):
        assert float(batched[b]) == pytest.approx(representation_entropy(z[b]), abs=1e-6)  # float32 Gram
    with pytest.raises(ValueError):
        representation_entropy(torch.randn(4))


def _layers(ratio: list[float], sink: list[float], entropy: list[float]) -> list[dict]:
    def e(value: float) -> dict:
        return {"mean": value, "ci95": None, "n": 1}

    return [{"layer": i, "token0_norm": e(r), "median_norm": e(1.0), "sink_rate": e(s), "token0_alpha": e(s / 2),
             "repr_entropy": e(h)} for i, (r, s, h) in enumerate(zip(ratio, sink, entropy))]


def test_together_finds_the_shared_layers() -> None:
    layers = _layers([1, 1, 1, 50, 60, 60], [0, 0, 0.1, 0.9, 0.95, 0.95], [3, 3, 3, 3, 2, 2])
    found = together(layers)
    assert (found["norm_layer"], found["sink_layer"], found["entropy_layer"]) == (3, 3, 4)
    assert found["together"] and found["spans"] == [[3, 4]]
    assert found["sentence"].startswith("The three change together at layers 3–4.")


def test_together_says_which_two_when_the_third_is_elsewhere() -> None:
    layers = _layers([1, 1, 1, 1, 1, 1, 80, 80], [0] * 6 + [0.8, 0.8], [3, 1, 1, 1, 1, 1, 1, 1])
    found = together(layers)
    assert not found["together"] and found["entropy_layer"] == 1
    assert "sink rate change together at layer 6" in found["sentence"]
    assert "but the three never do" in found["sentence"]


def test_together_with_a_flat_curve_makes_no_claim() -> None:
    found = together(_layers([1, 2, 4], [0.5, 0.5, 0.5], [3, 2, 1]))
    assert not found["together"] and found["sentence"].startswith("No comparison: the sink rate shows no change")
