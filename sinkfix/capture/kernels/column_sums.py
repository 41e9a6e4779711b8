"""Pass 2: per key tile, over the query tiles that can see it, each key's received probability.

With the row log-sum-exp from pass 1, p_ij = exp(s_ij - lse_i) is recomputed tile by tile and
summed over the real query rows (i < row_lengths[b]), per query head and per sequence: the column
sums that ``att_received``, ``alpha``, the sink rate and the norm-based contribution are made of.
Each program owns one key tile of one (sequence, KV head) and the sums of the query heads it
serves, so the sums need no atomics and come out the same on every run. Query tiles wholly outside the key tile's band (rows before a causal key,
rows beyond a sliding window, padding rows) are never loaded; nor is a probability tile stored.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sinkfix.capture.kernels import interpreting
from sinkfix.capture.kernels.problem import Problem, reference
from sinkfix.capture.kernels.row_stats import _tanh


@triton.jit
def _column_sums_kernel(
    q_ptr, k_ptr, lse_ptr, klen_ptr, rlen_ptr, out_ptr,
    sqb, sqh, sqt, sqd, skb, skh, skt, skd,
    heads, kv_heads, groups, n_queries, n_keys, d_qk, scale, softcap, left, right,
    SOFTCAP: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
    PACK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # A program takes one key tile of one KV head and the sums of PACK of its query heads (GQA).
    # (sequence, KV head, first group member) of this program: cdiv(groups, PACK) programs per KV head.
    slots = (groups + PACK - 1) // PACK  # not tl.cdiv: in the interpreter every nested jit call costs ms
    pid = tl.program_id(0)  # (sequence, head) slots on axis 0: up to 2^31 programs, not 65,535
    b = (pid // (kv_heads * slots)).to(tl.int64)
    kv = ((pid % (kv_heads * slots)) // slots).to(tl.int64)
    g0 = (pid % slots) * PACK
    n0 = tl.program_id(1) * BLOCK_N
    cols = n0 + tl.arange(0, BLOCK_N).to(tl.int64)
    dims = tl.arange(0, BLOCK_D).to(tl.int64)
    klen = tl.load(klen_ptr + b)
    rlen = tl.load(rlen_ptr + b)
    k = tl.load(k_ptr + b * skb + kv * skh + cols[:, None] * skt + dims[None, :] * skd,
                mask=(cols[:, None] < n_keys) & (dims[None, :] < d_qk), other=0.0)
    if UPCAST:  # the interpreter's bfloat16 dot is wrong; float32 operands give the same products
        k = k.to(tl.float32)
    r = tl.arange(0, PACK * BLOCK_M).to(tl.int64)
    member = g0 + r // BLOCK_M
    head = kv * groups + member
    total = tl.full([PACK, BLOCK_N], 0.0, tl.float32)

    # Only the real query rows whose band reaches this key tile: [n0 - right, n0 + BLOCK_N - 1 + left].
    lo = tl.maximum(n0 - right, 0)
    lo = (lo // BLOCK_M) * BLOCK_M
    hi = tl.minimum(rlen, n0 + BLOCK_N + left)
    for m0 in tl.range(lo, hi, BLOCK_M):
        rows = m0 + r % BLOCK_M
        real = (rows < rlen) & (member < groups)
        q = tl.load(q_ptr + b * sqb + head[:, None] * sqh + rows[:, None] * sqt + dims[None, :] * sqd,
                    mask=real[:, None] & (dims[None, :] < d_qk), other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
        lse = tl.load(lse_ptr + (b * heads + head) * n_queries + rows, mask=real, other=0.0)
        if IEEE:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))
        s = s * scale
        if SOFTCAP:
            s = _tanh(s / softcap) * softcap
        seen = (real[:, None] & (cols[None, :] < klen) & (cols[None, :] >= rows[:, None] - left)
                & (cols[None, :] <= rows[:, None] + right))
        p = tl.where(seen, tl.exp(tl.where(seen, s - lse[:, None], 0.0)), 0.0)
        total += tl.sum(tl.reshape(p, [PACK, BLOCK_M, BLOCK_N]), 1)

    members = g0 + tl.arange(0, PACK).to(tl.int64)
    where = (b * heads + kv * groups + members[:, None]) * n_keys + cols[None, :]
    tl.store(out_ptr + where, total, mask=(members[:, None] < groups) & (cols[None, :] < n_keys))


def column_sums(query: torch.Tensor, key: torch.Tensor, lse: torch.Tensor, problem: Problem,
                block_m: int = 64, block_n: int = 64, pack: int = 1) -> torch.Tensor:
    """Pass 2: [B, H, T_k] float32 sums over the real query rows; ``lse`` [B, H, T] from pass 1."""
    batch, heads, n_queries, d_qk = query.shape
    kv_heads, n_keys = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    out = torch.empty(batch, heads, n_keys, device=query.device, dtype=torch.float32)
    grid = (batch * kv_heads * triton.cdiv(groups, pack), triton.cdiv(n_keys, block_n))
    _column_sums_kernel[grid](
        query, key, lse.contiguous(), problem.key_lengths, problem.row_lengths, out,
        *query.stride(), *key.stride(),
        heads, kv_heads, groups, n_queries, n_keys, d_qk, float(problem.scale),
        float(problem.softcap or 1.0), int(problem.left), int(problem.right),
        SOFTCAP=problem.softcap is not None, IEEE=query.dtype == torch.float32 or interpreting(),
        UPCAST=interpreting() and query.dtype != torch.float32,
        PACK=pack, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=max(16, triton.next_power_of_2(d_qk)),
    )
    return out


def reference_column_sums(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, problem: Problem) -> torch.Tensor:
    """The same sums from the dense float64 reference (small shapes only)."""
    return reference(query, key, value, problem).column_sums
