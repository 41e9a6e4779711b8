"""Per-layer reductions against explicit loops."""
import math

import torch

from sinkfix.analysis import metrics


def test_visible_query_mean_causal_hand_worked():
    a = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.6, 0.2]]])
    # token 0 is seen by 3 queries, token 1 by 2, token 2 by 1.
    expected = torch.tensor([[(1.0 + 0.5 + 0.2) / 3, (0.5 + 0.6) / 2, 0.2 / 1]])
    received = metrics.received(a)
    torch.testing.assert_close(metrics.visible_query_mean(received, is_causal=True), expected)
    torch.testing.assert_close(metrics.visible_query_mean(received, is_causal=False), a.mean(dim=1))


def test_received_is_column_mean_and_sums_to_one():
    a = torch.rand(2, 5, 5).softmax(-1)
    got = metrics.received(a)
    torch.testing.assert_close(got, torch.stack([a[h].sum(0) / 5 for h in range(2)]))
    torch.testing.assert_close(got.sum(-1), torch.ones(2))


def test_row_entropy_against_formula():
    a = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])
    # row 0: ln 2, row 1: 0 -> mean ln 2 / 2
    torch.testing.assert_close(metrics.row_entropy(a), torch.tensor([math.log(2) / 2]))


def test_value_norms_full_vector_is_concatenation():
    v = torch.randn(3, 4, 8)
    per_head, full = metrics.value_norms(v)
    concat = v.permute(1, 0, 2).reshape(4, 24)
    torch.testing.assert_close(full, concat.norm(dim=-1))
    torch.testing.assert_close(per_head, v.norm(dim=-1))


def test_contribution_against_explicit_sum_with_gqa():
    heads, kv, n, d, hidden = 4, 2, 5, 3, 6
    a = torch.rand(heads, n, n).softmax(-1)
    v = torch.randn(kv, n, d)
    w_o = torch.randn(hidden, heads * d)
    got = metrics.contribution(metrics.received(a), v, metrics.output_grams(w_o, heads))
    expected = torch.zeros(heads, n)
    for h in range(heads):
        w = w_o[:, h * d : (h + 1) * d]
        vh = v[h // (heads // kv)]
        for j in range(n):
            expected[h, j] = sum(torch.linalg.norm(a[h, i, j] * (w @ vh[j])) for i in range(n)) / n
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_sink_rate():
    alpha = torch.tensor([[[0.5, 0.1]], [[0.2, 0.4]]])  # L=2, H=1, T=2
    torch.testing.assert_close(metrics.sink_rate(alpha, 0.3), torch.tensor([0.5, 0.5]))


def test_entropy_from_scores_equals_direct_entropy_with_causal_mask():
    n = 9
    scores = torch.randn(3, n, n) * 4
    mask = torch.triu(torch.full((n, n), torch.finfo(torch.float32).min), 1)  # eager's additive mask
    masked = scores + mask
    probs = masked.softmax(-1)
    direct = metrics.row_entropy(probs)
    torch.testing.assert_close(metrics.row_entropy_from_scores(probs, masked), direct, rtol=0, atol=1e-5)
    # head-by-head scratch gives the same numbers
    torch.testing.assert_close(metrics.row_entropy_from_scores(probs, masked, torch.empty(n, n)), direct,
                               rtol=0, atol=1e-5)


def test_entropy_from_scores_falls_back_on_infinite_scores():
    scores = torch.tensor([[[0.0, float("-inf")], [1.0, 2.0]]])
    probs = scores.softmax(-1)
    torch.testing.assert_close(metrics.row_entropy_from_scores(probs, scores), metrics.row_entropy(probs))


def test_row_entropies_per_row_with_every_anchor_case():
    """Per-row entropies against -sum p ln p: key 0 visible (the anchor), key 0 masked (a sliding
    window: the argmax anchor), and -inf scores (the direct formula)."""
    torch.manual_seed(1)
    n = 6
    minimum = torch.finfo(torch.float32).min
    raw = torch.randn(2, n, n) * 3
    causal = torch.where(torch.ones(n, n).tril().bool(), 0.0, minimum)
    window = torch.where(torch.ones(n, n).tril().bool() & ~torch.ones(n, n).tril(-3).bool(), 0.0, minimum)
    for mask in (causal, window, torch.where(causal == 0, 0.0, float("-inf"))):
        scores = raw + mask
        probs = scores.softmax(dim=-1)
        direct = -torch.special.xlogy(probs, probs).sum(dim=-1)
        torch.testing.assert_close(metrics.row_entropies(probs, scores), direct, rtol=0, atol=1e-5)


def test_row_entropies_with_a_learned_sink_column():
    """gpt-oss style: a sink logit per head is one more column of the softmax; the entropy covers it."""
    torch.manual_seed(2)
    n = 5
    scores = torch.randn(3, n, n) + torch.where(torch.ones(n, n).tril().bool(), 0.0, torch.finfo(torch.float32).min)
    sink = torch.randn(3, 1, 1).expand(3, n, 1)
    full = torch.cat([scores, sink], dim=-1).softmax(dim=-1)
    probs, mass = full[..., :-1], full[..., -1]
    direct = -torch.special.xlogy(full, full).sum(dim=-1)
    torch.testing.assert_close(metrics.row_entropies(probs, scores, mass), direct, rtol=0, atol=1e-5)
