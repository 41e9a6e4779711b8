"""ACT redistribution against a hand-worked 3x3 case, and its invariants."""
import torch

from sinkfix.analysis.redistribute import redistribute, sink_mask

# A causal 3x3 attention matrix; the future (upper triangle) is masked to 0.
A = torch.tensor(
    [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.0],
        [0.2, 0.6, 0.2],
    ]
)


def test_hand_worked_3x3_sink_on_token_1():
    # S = {1}, beta = 0.5.
    # Row 0: the only visible token (0) is not in S -> sink mass 0 -> unchanged.
    # Row 1: sink mass 0.5, kept 0.25; the freed 0.25 goes to token 0 (rest mass 0.5): 0.5 + 0.25 = 0.75.
    # Row 2: sink mass 0.6, kept 0.3; the freed 0.3 splits 0.2:0.2 over tokens 0 and 2 -> 0.35 each.
    expected = torch.tensor(
        [
            [1.0, 0.0, 0.0],
            [0.75, 0.25, 0.0],
            [0.35, 0.30, 0.35],
        ]
    )
    got = redistribute(A, sink_mask([1], 3), beta=0.5)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)


def test_hand_worked_beta_zero_moves_everything():
    got = redistribute(A, sink_mask([1], 3), beta=0.0)
    expected = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)


def test_row_whose_visible_tokens_are_all_in_s_is_unchanged():
    # Token 0 requested explicitly: row 0 sees only token 0, so it has nowhere to move its mass.
    got = redistribute(A, sink_mask([0], 3, include_first=True), beta=0.0)
    assert torch.equal(got[0], A[0])
    torch.testing.assert_close(got[2], torch.tensor([0.0, 0.75, 0.25]), rtol=0, atol=1e-7)


def _random_causal(heads: int = 4, n: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(heads, n, n, generator=g)
    scores = scores.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
    return scores.softmax(-1)


def test_rows_sum_to_one_and_masked_entries_stay_zero():
    probs = _random_causal()
    got = redistribute(probs, sink_mask([2, 5], 7), beta=0.3)
    torch.testing.assert_close(got.sum(-1), torch.ones(4, 7), rtol=0, atol=1e-6)
    future = torch.triu(torch.ones(7, 7, dtype=torch.bool), 1)
    assert torch.all(got[:, future] == 0)


def test_beta_one_is_bit_identical():
    probs = _random_causal(seed=3)
    assert torch.equal(redistribute(probs, sink_mask([1, 3], 7), beta=1.0), probs)


def test_token_zero_is_protected_unless_named():
    assert not sink_mask([0, 2], 5)[0]
    assert sink_mask([0, 2], 5, include_first=True)[0]
    probs = _random_causal(seed=4)
    assert torch.equal(redistribute(probs, sink_mask([0], 7), beta=0.0), probs)


def test_sink_share_is_scaled_by_beta():
    probs = _random_causal(seed=5)
    got = redistribute(probs, sink_mask([3], 7), beta=0.25)
    torch.testing.assert_close(got[:, 4:, 3], probs[:, 4:, 3] * 0.25)
