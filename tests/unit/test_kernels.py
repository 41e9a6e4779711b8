"""The fused Triton kernels against their dense float64 torch reference, through Triton's interpreter.

``TRITON_INTERPRET=1`` is set by tests/conftest.py before the kernel modules are imported. Tiles of
16 x 16 make small shapes span several tiles, so the online rescaling, the skipped tiles (causal
future, beyond a window, padding) and the partial last tile are all exercised.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinkfix.capture.kernels import interpreting
from sinkfix.capture.kernels.column_sums import column_sums, reference_column_sums
from sinkfix.capture.kernels.problem import Problem
from sinkfix.capture.kernels.row_stats import reference_row_stats, row_stats

TILE = 16
pytestmark = pytest.mark.skipif(not interpreting(), reason="the kernel tests run CPU tensors through the interpreter")


def _problem(lengths: list[int], n: int, left: int, right: int, softcap: float | None = None,
             sinks: torch.Tensor | None = None, scale: float = 0.35) -> Problem:
    counts = torch.tensor(lengths, dtype=torch.int32)
    return Problem(scale=scale, left=left, right=right, key_lengths=counts, row_lengths=counts, softcap=softcap,
                   sinks=sinks)


def _check(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, problem: Problem,
           rtol: float = 1e-5, atol: float = 1e-6, output_atol: float = 1e-5, pack: int = 1) -> None:
    stats = row_stats(query, key, value, problem, TILE, TILE, pack)
    expected = reference_row_stats(query, key, value, problem)
    close = dict(rtol=rtol, atol=atol, check_dtype=False)
    torch.testing.assert_close(stats.lse, expected.lse, **close)
    torch.testing.assert_close(stats.entropy, expected.entropy, **close)
    torch.testing.assert_close(stats.output, expected.output, rtol=rtol, atol=output_atol, check_dtype=False)
    if problem.sinks is None:
        assert stats.sink_mass is None
    else:
        torch.testing.assert_close(stats.sink_mass, expected.sink_mass, **close)
    sums = column_sums(query, key, stats.lse, problem, TILE, TILE, pack)
    torch.testing.assert_close(sums, reference_column_sums(query, key, value, problem), **close)


def _qkv(batch: int, heads: int, kv_heads: int, n: int, d: int, d_v: int | None = None, seed: int = 0,
         dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, n, d, generator=generator) * 2
    k = torch.randn(batch, kv_heads, n, d, generator=generator) * 2
    v = torch.randn(batch, kv_heads, n, d_v or d, generator=generator)
    return q.to(dtype), k.to(dtype), v.to(dtype)


@pytest.mark.parametrize("pack", [1, 2, 4])
def test_causal_gqa_with_right_padding_and_odd_head_dims(pack):
    """3 query heads per KV head, served one, two (the last program half empty) or four at a time."""
    q, k, v = _qkv(2, 6, 2, 45, 12, d_v=20)
    _check(q, k, v, _problem([45, 30], 45, left=44, right=0), pack=pack)


def test_bidirectional_with_padding():
    q, k, v = _qkv(3, 4, 4, 37, 8, seed=1)
    _check(q, k, v, _problem([37, 20, 1], 37, left=36, right=36))


def test_causal_sliding_window_and_soft_capping():
    """A window of 5 keys skips most key tiles; soft-capping bounds the logits to +-2."""
    q, k, v = _qkv(2, 4, 2, 50, 8, seed=2)
    _check(q, k, v, _problem([50, 41], 50, left=4, right=0, softcap=2.0))


def test_learned_sinks_per_head_and_per_query():
    q, k, v = _qkv(2, 4, 2, 33, 8, seed=3)
    per_head = torch.tensor([2.0, -1.0, 0.5, 3.0]).reshape(1, 4, 1).expand(2, 4, 33)
    _check(q, k, v, _problem([33, 18], 33, left=32, right=0, sinks=per_head))
    per_query = torch.randn(2, 4, 33, generator=torch.Generator().manual_seed(4))
    _check(q, k, v, _problem([33, 18], 33, left=32, right=0, sinks=per_query))


def test_padding_rows_that_see_no_key_are_finite_and_zero():
    """A padding row beyond a window sees no key: lse -inf, entropy 0, output 0, never nan."""
    q, k, v = _qkv(1, 2, 1, 40, 8, seed=5)
    problem = _problem([10], 40, left=2, right=0)
    stats = row_stats(q, k, v, problem, TILE, TILE)
    assert torch.isneginf(stats.lse[0, :, 20:]).all() and not torch.isnan(stats.output).any()
    assert (stats.entropy[0, :, 20:] == 0).all() and (stats.output[0, 20:] == 0).all()
    _check(q, k, v, problem)


def test_non_contiguous_queries_as_transformers_passes_them():
    """Attention modules hand over [B, H, T, d] views of [B, T, H, d] projections."""
    q, k, v = _qkv(2, 4, 2, 30, 8, seed=6)
    q_view = q.transpose(1, 2).contiguous().transpose(1, 2)
    assert not q_view.is_contiguous()
    _check(q_view, k, v, _problem([30, 25], 30, left=29, right=0))


def test_bfloat16_inputs_keep_float32_statistics():
    q, k, v = _qkv(1, 4, 2, 40, 16, seed=7, dtype=torch.bfloat16)
    problem = _problem([40], 40, left=39, right=0)
    stats = row_stats(q, k, v, problem, TILE, TILE)
    assert stats.lse.dtype == torch.float32 and stats.output.dtype == torch.bfloat16
    # The logits of bfloat16 inputs are exact in float32 (products of 8-bit mantissas), so the statistics
    # hold float32 precision; only the output is rounded to bfloat16 (and p to bfloat16 before @ V, as eager).
    _check(q, k, v, problem, output_atol=3e-2)


@st.composite
def shapes(draw):
    kv_heads = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    n = draw(st.integers(1, 40))
    batch = draw(st.integers(1, 3))
    lengths = [n] + [draw(st.integers(1, n)) for _ in range(batch - 1)]  # the longest sets T, as in a batch
    causal = draw(st.booleans())
    window = draw(st.one_of(st.none(), st.integers(1, n + 2)))
    if window is None:
        left, right = n - 1, 0 if causal else n - 1
    else:
        left, right = (window - 1, 0) if causal else (window, window)
    return dict(batch=batch, heads=kv_heads * groups, kv_heads=kv_heads, n=n, d=draw(st.sampled_from([4, 8, 16, 24])),
                lengths=lengths, left=left, right=right, softcap=draw(st.sampled_from([None, 3.0])),
                sinks=draw(st.booleans()), seed=draw(st.integers(0, 2**16)), pack=draw(st.sampled_from([1, 2, 4])))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes())
def test_random_shapes_equal_the_reference(case):
    q, k, v = _qkv(case["batch"], case["heads"], case["kv_heads"], case["n"], case["d"], seed=case["seed"])
    sinks = None
    if case["sinks"]:
        sinks = torch.randn(1, case["heads"], 1, generator=torch.Generator().manual_seed(case["seed"]))
        sinks = sinks.expand(case["batch"], case["heads"], case["n"])
    _check(q, k, v, _problem(case["lengths"], case["n"], case["left"], case["right"], case["softcap"], sinks),
           pack=case["pack"])
