"""Pass 1: per query tile, over the key tiles it can see, each row's statistics and the output.

For each row i the kernel keeps, as FlashAttention does, the running maximum M, the sum
l = sum_j exp(s_j - M) and the output accumulator sum_j exp(s_j - M) v_j, rescaled by
exp(M_old - M_new) whenever the maximum grows. Beside them it keeps the entropy accumulator
a = sum_j exp(s_j - M) (s_j - M), rescaled the same way (a_new = alpha (a + (M_old - M_new) l)),
so that at the end

    lse = M + ln l,   H = -sum_j p_j ln p_j = ln l - a / l,   O = acc / l,

with every term of modest size (no cancellation between lse and sum p s). A learned sink (gpt-oss)
is one more column every row sees: it starts the row with M = s_aux, l = 1, a = 0, and its
probability is exp(s_aux - lse). Key tiles wholly outside the row tile's band (the future of a
causal tile, keys beyond a sliding window, right padding) are never loaded.

No probability tile is written: per row the kernel stores lse, H, the sink mass (float32) and O.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sinkfix.capture.kernels import interpreting
from sinkfix.capture.kernels.problem import Problem, reference


@dataclass(frozen=True)
class RowStats:
    lse: torch.Tensor  # [B, H, T] float32; -inf for a row that sees no key
    entropy: torch.Tensor  # [B, H, T] float32 nats, the sink column included
    sink_mass: torch.Tensor | None  # [B, H, T] float32
    output: torch.Tensor  # [B, T, H, d_v] in the value dtype; 0 for a row that sees no key


@triton.jit
def _tanh(x):
    # Triton's interpreter has no libdevice tanh: tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|).
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _row_stats_kernel(
    q_ptr, k_ptr, v_ptr, sink_ptr, klen_ptr, lse_ptr, ent_ptr, mass_ptr, out_ptr,
    sqb, sqh, sqt, sqd, skb, skh, skt, skd, svb, svh, svt, svd, ssb, ssh, sst,
    sob, sot, soh, sod,
    heads, kv_heads, groups, n_queries, n_keys, d_qk, d_v, scale, softcap, left, right,
    HAS_SINK: tl.constexpr, SOFTCAP: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    PACK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    # A program takes BLOCK_M query positions of PACK query heads sharing one KV head (GQA), stacked
    # as PACK * BLOCK_M rows: each K/V tile is loaded once for the group.
    # (sequence, KV head, first group member) of this program: cdiv(groups, PACK) programs per KV head.
    slots = (groups + PACK - 1) // PACK  # not tl.cdiv: in the interpreter every nested jit call costs ms
    pid = tl.program_id(0)  # (sequence, head) slots on axis 0: up to 2^31 programs, not 65,535
    b = (pid // (kv_heads * slots)).to(tl.int64)
    kv = ((pid % (kv_heads * slots)) // slots).to(tl.int64)
    g0 = (pid % slots) * PACK
    m0 = tl.program_id(1) * BLOCK_M
    r = tl.arange(0, PACK * BLOCK_M).to(tl.int64)  # int64 indices: no overflow, and no overflow checks in the interpreter
    member = g0 + r // BLOCK_M
    rows = m0 + r % BLOCK_M  # query positions
    head = kv * groups + member
    row_ok = (rows < n_queries) & (member < groups)
    dims = tl.arange(0, BLOCK_D).to(tl.int64)
    dims_v = tl.arange(0, BLOCK_DV).to(tl.int64)
    q = tl.load(q_ptr + b * sqb + head[:, None] * sqh + rows[:, None] * sqt + dims[None, :] * sqd,
                mask=row_ok[:, None] & (dims[None, :] < d_qk), other=0.0)
    if UPCAST:  # the interpreter's bfloat16 dot is wrong; float32 operands give the same products
        q = q.to(tl.float32)
    klen = tl.load(klen_ptr + b)

    if HAS_SINK:
        m_i = tl.load(sink_ptr + b * ssb + head * ssh + rows * sst, mask=row_ok, other=0.0).to(tl.float32)
        sink = m_i
        l_i = tl.full([PACK * BLOCK_M], 1.0, tl.float32)
    else:
        m_i = tl.full([PACK * BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.full([PACK * BLOCK_M], 0.0, tl.float32)
    a_i = tl.full([PACK * BLOCK_M], 0.0, tl.float32)
    acc = tl.full([PACK * BLOCK_M, BLOCK_DV], 0.0, tl.float32)

    # Only the key tiles the row tile's band reaches: [m0 - left, m0 + BLOCK_M - 1 + right], within klen.
    lo = tl.maximum(m0 - left, 0)
    lo = (lo // BLOCK_N) * BLOCK_N
    hi = tl.minimum(klen, m0 + BLOCK_M + right)
    for n0 in tl.range(lo, hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N).to(tl.int64)
        col_ok = cols < n_keys
        k = tl.load(k_ptr + b * skb + kv * skh + cols[:, None] * skt + dims[None, :] * skd,
                    mask=col_ok[:, None] & (dims[None, :] < d_qk), other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
        if IEEE:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))
        s = s * scale
        if SOFTCAP:
            s = _tanh(s / softcap) * softcap
        seen = (cols[None, :] < klen) & (cols[None, :] >= rows[:, None] - left) & (cols[None, :] <= rows[:, None] + right)
        s = tl.where(seen, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen nothing yet
        alpha = tl.exp(m_i - m_safe)
        shifted = tl.where(seen, s - m_safe[:, None], 0.0)
        p = tl.where(seen, tl.exp(shifted), 0.0)
        # (M_old - M_new) l, written so that a row with l = 0 (and M_old = -inf) gives 0, not nan.
        drift = (tl.where(l_i > 0, m_i, m_safe) - m_safe) * l_i
        a_i = alpha * (a_i + drift) + tl.sum(p * shifted, 1)
        l_i = alpha * l_i + tl.sum(p, 1)
        v = tl.load(v_ptr + b * svb + kv * svh + cols[:, None] * svt + dims_v[None, :] * svd,
                    mask=col_ok[:, None] & (dims_v[None, :] < d_v), other=0.0)
        weights = p.to(v.dtype)  # as eager: the probabilities in the model dtype, then @ V
        if UPCAST:
            weights, v = weights.to(tl.float32), v.to(tl.float32)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(weights, v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(weights, v)
        m_i = m_new

    some = l_i > 0
    l_safe = tl.where(some, l_i, 1.0)
    log_l = tl.log(l_safe)
    lse = tl.where(some, m_i + log_l, float("-inf"))
    entropy = tl.where(some, log_l - a_i / l_safe, 0.0)
    base = (b * heads + head) * n_queries + rows
    tl.store(lse_ptr + base, lse, mask=row_ok)
    tl.store(ent_ptr + base, entropy, mask=row_ok)
    if HAS_SINK:
        tl.store(mass_ptr + base, tl.exp(sink - lse), mask=row_ok)
    out = acc / l_safe[:, None]
    tl.store(out_ptr + b * sob + rows[:, None] * sot + head[:, None] * soh + dims_v[None, :] * sod,
             out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & (dims_v[None, :] < d_v))


def row_stats(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, problem: Problem,
              block_m: int = 64, block_n: int = 64, pack: int = 1) -> RowStats:
    """Pass 1 over queries [B, H, T, d] (any strides), keys [B, H_kv, T, d], values [B, H_kv, T, d_v].

    ``pack`` (a power of two) query heads of one KV head share a program: fewer, larger programs.
    """
    batch, heads, n_queries, d_qk = query.shape
    kv_heads, n_keys, d_v = key.shape[1], key.shape[2], value.shape[3]
    groups = heads // kv_heads
    stats = dict(device=query.device, dtype=torch.float32)
    lse = torch.empty(batch, heads, n_queries, **stats)
    entropy = torch.empty(batch, heads, n_queries, **stats)
    mass = torch.empty(batch, heads, n_queries, **stats) if problem.sinks is not None else None
    output = torch.empty(batch, n_queries, heads, d_v, device=query.device, dtype=value.dtype)
    sinks = problem.sinks if problem.sinks is not None else lse  # a placeholder pointer, never read
    sink_strides = sinks.stride() if problem.sinks is not None else (0, 0, 0)
    grid = (batch * kv_heads * triton.cdiv(groups, pack), triton.cdiv(n_queries, block_m))
    _row_stats_kernel[grid](
        query, key, value, sinks, problem.key_lengths, lse, entropy, mass if mass is not None else lse, output,
        *query.stride(), *key.stride(), *value.stride(), *sink_strides, *output.stride(),
        heads, kv_heads, groups, n_queries, n_keys, d_qk, d_v, float(problem.scale),
        float(problem.softcap or 1.0), int(problem.left), int(problem.right),
        HAS_SINK=problem.sinks is not None, SOFTCAP=problem.softcap is not None,
        IEEE=query.dtype == torch.float32 or interpreting(), UPCAST=interpreting() and query.dtype != torch.float32,
        PACK=pack, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_D=max(16, triton.next_power_of_2(d_qk)), BLOCK_DV=max(16, triton.next_power_of_2(d_v)),
    )
    return RowStats(lse, entropy, mass, output)


def reference_row_stats(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, problem: Problem) -> RowStats:
    """The same four results from the dense float64 reference (small shapes only)."""
    ref = reference(query, key, value, problem)
    return RowStats(ref.lse, ref.entropy, ref.sink_mass, ref.output)
