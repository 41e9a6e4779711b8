"""Each lab variant's normaliser: SinkFix's attention function against hand-written formulas and against
the lab model's own plain attention, in one block and in several."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sinkfix.capture import attention as capture
from sinkfix.capture import normalisers
from sinkfix.experiments.lab.architecture import lab_eager_attention

T, H, D = 7, 2, 4
MIN = torch.finfo(torch.float32).min


class _Module(nn.Module):
    layer_idx = 0


def _causal_mask() -> torch.Tensor:
    return torch.triu(torch.full((T, T), MIN), diagonal=1)[None, None]


def _qkv(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(2 * torch.randn(1, H, T, D, generator=g) for _ in range(3))


def _hand(s: float, row: list[float], name: str) -> float:
    """One weight from the papers' formulas, written out on Python floats over the visible row."""
    if name == "sigmoid":
        return 1 / (1 + math.exp(-s))
    if name == "relu":
        return max(s, 0.0)
    if name == "softpick":  # Zuhri et al.: ReLU(e^s - 1) / (sum |e^s' - 1| + eps)
        return max(math.exp(s) - 1, 0.0) / sum(abs(math.exp(x) - 1) for x in row)
    if name == "softmax1":  # off by one: e^s / (1 + sum e^s')
        return math.exp(s) / (1 + sum(math.exp(x) for x in row))
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["sigmoid", "relu", "softpick", "softmax1"])
def test_weights_match_the_formulas_and_masked_keys_get_nothing(name: str) -> None:
    q, k, v = _qkv()
    logits = (q @ k.transpose(2, 3)) * D ** -0.5
    extra = {"s_aux": torch.zeros(H)} if name == "softmax1" else {"normaliser": name}
    _, weights = capture.sinkfix_attention(_Module(), q, k, v, _causal_mask(), scaling=D ** -0.5, **extra)
    for h in range(H):
        for i in range(T):
            row = logits[0, h, i, : i + 1].tolist()
            for j in range(T):
                expected = _hand(logits[0, h, i, j].item(), row, name) if j <= i else 0.0
                # softpick's stable form carries an e^{-max} factor on its epsilon: negligible at these scales
                assert weights[0, h, i, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("extra", [{}, {"normaliser": "sigmoid"}, {"normaliser": "relu"}, {"normaliser": "softpick"},
                                   {"s_aux": "zero"}, {"s_aux": "learned"}])
def test_sinkfix_attention_equals_the_lab_models_plain_attention(extra: dict) -> None:
    q, k, v = _qkv(1)
    if "s_aux" in extra:
        extra = {"s_aux": torch.zeros(H) if extra["s_aux"] == "zero" else torch.tensor([1.5, -0.5])}
    mask = _causal_mask()
    plain_out, plain_w = lab_eager_attention(_Module(), q, k, v, mask, scaling=D ** -0.5, **extra)
    ours_out, ours_w = capture.sinkfix_attention(_Module(), q, k, v, mask, scaling=D ** -0.5, **extra)
    assert torch.equal(ours_out, plain_out) and torch.equal(ours_w, plain_w)  # one block: the same ops
    with capture.blocking(3):  # several blocks: rounding at most
        blocked, _ = capture.sinkfix_attention(_Module(), q, k, v, mask, scaling=D ** -0.5, **extra)
    torch.testing.assert_close(blocked, plain_out, rtol=1e-5, atol=1e-6)


class _Keep:
    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def observe(self, layer, probs, value, scores, start=0, sink_mass=None) -> None:
        self.seen.append((probs, scores))


def test_observers_get_the_weights_and_their_logarithm() -> None:
    q, k, v = _qkv(2)
    keep = _Keep()
    with capture.observing(keep):
        _, weights = capture.sinkfix_attention(_Module(), q, k, v, _causal_mask(), scaling=0.5, normaliser="relu")
    probs, scores = keep.seen[0]
    assert torch.equal(probs, weights)
    assert torch.equal(scores, weights.log())  # -inf where ReLU gives 0, so an entropy reads -sum w ln w


def test_unknown_or_conflicting_normalisers_are_refused() -> None:
    q, k, v = _qkv()
    with pytest.raises(capture.UnsupportedKeywordError, match="normaliser 'tanh'"):
        capture.sinkfix_attention(_Module(), q, k, v, None, normaliser="tanh")
    with pytest.raises(capture.UnsupportedKeywordError, match="learned sinks"):
        capture.sinkfix_attention(_Module(), q, k, v, None, normaliser="relu", s_aux=torch.zeros(H))
    assert set(normalisers.NORMALISERS) == {"softmax", "sigmoid", "relu", "softpick"}


def test_softpick_stays_finite_when_a_whole_row_is_far_below_zero() -> None:
    # Zuhri et al.'s reference factors out the row maximum: e^{-m} overflows for m < -88 and the gradient
    # turns NaN (a lab run diverged so). Every e^s - 1 < 0 there, so every weight is 0, gradient included.
    scores = torch.tensor([[-200.0, -150.0, -120.0], [1.0, -200.0, 0.5]], requires_grad=True)
    weights = normalisers.softpick(scores)
    assert weights[0].tolist() == [0.0, 0.0, 0.0]
    expected = [(math.e - 1) / ((math.e - 1) + 1 + (math.exp(0.5) - 1)), 0.0,
                (math.exp(0.5) - 1) / ((math.e - 1) + 1 + (math.exp(0.5) - 1))]
    assert weights[1].tolist() == pytest.approx(expected, rel=1e-6)
    weights.sum().backward()
    assert torch.isfinite(scores.grad).all()
