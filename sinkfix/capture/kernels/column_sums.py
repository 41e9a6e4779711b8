"""Pass 2: per key tile, over the query tiles that can see it, each key's received probability.

With the row log-sum-exp from pass 1, p_ij = exp(s_ij - lse_i) is recomputed tile by tile and
summed over the real query rows (i < row_lengths[b]), per query head and per sequence: the column
sums that ``att_received``, ``alpha``, the sink rate and the norm-based contribution are made of.
Each program owns one key tile of one (sequence, KV head) and the sums of the query heads it
serves, so the sums need no atomics and come out the same on every run. The probabilities add up
in a register tile across the loop and are reduced over the rows once, after it. Query tiles
wholly outside the key tile's band (rows before a causal key, rows beyond a sliding window,
padding rows) are never loaded; of the tiles visited only the band's edges are masked.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from sinkfix.capture.kernels import configs, launch
from sinkfix.capture.kernels.launch import Launch, Target, target_of
from sinkfix.capture.kernels.problem import Problem, reference
from sinkfix.capture.kernels.row_stats import _tanh


@triton.jit
def _query_tile(total, q_ptrs, lse_ptrs, kt, m0, r_local, cols, dims, rlen, klen, left, right, scale, softcap, sqt,
                SOFTCAP: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, D_QK: tl.constexpr,
                BLOCK_D: tl.constexpr, MASKED: tl.constexpr):
    """Add one query tile's probabilities into the register tile ``total``; ``MASKED`` on the band's edges."""
    rows = m0 + r_local
    step = tl.cast(m0, tl.int64)  # the loop index is a plain int in the interpreter
    if MASKED:
        real = rows < rlen
        mask = real[:, None]
        if BLOCK_D != D_QK:
            mask = mask & (dims[None, :] < D_QK)
        q = tl.load(q_ptrs + step * sqt, mask=mask, other=0.0)
        lse = tl.load(lse_ptrs + m0, mask=real, other=0.0)
    else:
        if BLOCK_D != D_QK:
            q = tl.load(q_ptrs + step * sqt, mask=dims[None, :] < D_QK, other=0.0)
        else:
            q = tl.load(q_ptrs + step * sqt)
        lse = tl.load(lse_ptrs + m0)
    if UPCAST:  # the interpreter's bfloat16 dot is wrong; float32 operands give the same products
        q = q.to(tl.float32)
    s = tl.dot(q, kt, input_precision=PRECISION) * scale
    if SOFTCAP:
        s = _tanh(s / softcap) * softcap
    if MASKED:
        seen = (real[:, None] & (cols[None, :] < klen) & (cols[None, :] >= rows[:, None] - left)
                & (cols[None, :] <= rows[:, None] + right))
        p = tl.where(seen, tl.exp(tl.where(seen, s - lse[:, None], 0.0)), 0.0)
    else:
        p = tl.exp(s - lse[:, None])
    return total + p


@triton.jit
def _column_sums_kernel(
    q_ptr, k_ptr, lse_ptr, klen_ptr, rlen_ptr, out_ptr,
    sqb, sqh, sqt, sqd, skb, skh, skt, skd,
    heads, kv_heads, groups, n_queries, n_keys, scale, softcap, left, right,
    D_QK: tl.constexpr, SOFTCAP: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    PACK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    # A program takes one key tile of one KV head and the sums of PACK of its query heads (GQA).
    # (sequence, KV head, first group member) of this program: cdiv(groups, PACK) programs per KV head.
    slots = (groups + PACK - 1) // PACK  # not tl.cdiv: in the interpreter every nested jit call costs ms
    pid = tl.program_id(0)  # (sequence, head) slots on axis 0: up to 2^31 programs, not 65,535
    b = pid // (kv_heads * slots)
    kv = (pid % (kv_heads * slots)) // slots
    g0 = (pid % slots) * PACK
    n0 = tl.program_id(1) * BLOCK_N
    cols = n0 + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    b64 = b.to(tl.int64)
    klen = tl.load(klen_ptr + b)
    rlen = tl.load(rlen_ptr + b)
    k = tl.load(k_ptr + b64 * skb + kv.to(tl.int64) * skh + cols[:, None].to(tl.int64) * skt + dims[None, :] * skd,
                mask=(cols[:, None] < n_keys) & (dims[None, :] < D_QK), other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
    kt = tl.trans(k)  # once, outside the loop
    r = tl.arange(0, PACK * BLOCK_M)
    r_local = r % BLOCK_M
    member = g0 + r // BLOCK_M
    # A member past the group reads the group's last head, in bounds, and its sums are never stored.
    head = (kv * groups + tl.minimum(member, groups - 1)).to(tl.int64)
    q_offs = r_local[:, None] * sqt + dims[None, :] * sqd  # within a tile: int32
    q_ptrs = q_ptr + b64 * sqb + head[:, None] * sqh + q_offs
    lse_ptrs = lse_ptr + (b64 * heads + head) * n_queries + r_local
    total = tl.zeros([PACK * BLOCK_M, BLOCK_N], tl.float32)

    # Only the real query rows whose band reaches this key tile: [n0 - right, n0 + BLOCK_N - 1 + left].
    lo = (tl.maximum(n0 - right, 0) // BLOCK_M) * BLOCK_M
    hi = tl.minimum(rlen, n0 + BLOCK_N + left)
    # Interior tiles: real rows that see every key of the tile (m0 >= n0 + BLOCK_N - 1 - right,
    # m0 + BLOCK_M - 1 <= n0 + left, m0 + BLOCK_M <= rlen), and only if the tile lies within klen.
    inner = tl.minimum(tl.maximum((n0 + BLOCK_N - 1 - right + BLOCK_M - 1) // BLOCK_M * BLOCK_M, lo), hi)
    last = tl.minimum(n0 + left + 1, rlen)
    outer = tl.maximum((last // BLOCK_M) * BLOCK_M, inner)
    if n0 + BLOCK_N > klen:
        outer = inner
    for m0 in tl.range(lo, inner, BLOCK_M):
        total = _query_tile(total, q_ptrs, lse_ptrs, kt, m0, r_local, cols, dims, rlen, klen, left, right,
                            scale, softcap, sqt, SOFTCAP, PRECISION, UPCAST, D_QK, BLOCK_D, True)
    for m0 in tl.range(inner, outer, BLOCK_M):
        total = _query_tile(total, q_ptrs, lse_ptrs, kt, m0, r_local, cols, dims, rlen, klen, left, right,
                            scale, softcap, sqt, SOFTCAP, PRECISION, UPCAST, D_QK, BLOCK_D, False)
    for m0 in tl.range(outer, hi, BLOCK_M):
        total = _query_tile(total, q_ptrs, lse_ptrs, kt, m0, r_local, cols, dims, rlen, klen, left, right,
                            scale, softcap, sqt, SOFTCAP, PRECISION, UPCAST, D_QK, BLOCK_D, True)

    sums = tl.sum(tl.reshape(total, [PACK, BLOCK_M, BLOCK_N]), 1)  # once, after the loop
    members = g0 + tl.arange(0, PACK)
    where = (b64 * heads + kv * groups + members[:, None]) * n_keys + cols[None, :]
    tl.store(out_ptr + where, sums, mask=(members[:, None] < groups) & (cols[None, :] < n_keys))


def plan(query: torch.Tensor, key: torch.Tensor, lse: torch.Tensor, problem: Problem, out: torch.Tensor,
         target: Target, config: configs.Config | None = None) -> Launch:
    """The launch of pass 2 for these tensors on ``target`` (the compile check plans the same)."""
    batch, heads, n_queries, d_qk = query.shape
    kv_heads, n_keys = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    dtype = str(query.dtype)
    config = config or configs.lookup("column_sums", target, d_qk, dtype, n_queries, groups)
    grid = (batch * kv_heads * triton.cdiv(groups, config.pack), triton.cdiv(n_keys, config.block_n))
    args = (query, key, lse, problem.key_lengths, problem.row_lengths, out, *query.stride(), *key.stride(),
            heads, kv_heads, groups, n_queries, n_keys, float(problem.scale),
            float(problem.softcap or 1.0), int(problem.left), int(problem.right))
    kwargs = dict(
        D_QK=d_qk, SOFTCAP=problem.softcap is not None, PRECISION=configs.precision(target, dtype),
        UPCAST=target.interpreted and query.dtype != torch.float32, PACK=config.pack,
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_D=configs.head_block(d_qk),
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return Launch(_column_sums_kernel, grid, args, kwargs)


def empty(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    return torch.empty(query.shape[0], query.shape[1], key.shape[2], device=query.device, dtype=torch.float32)


def column_sums(query: torch.Tensor, key: torch.Tensor, lse: torch.Tensor, problem: Problem,
                block_m: int | None = None, block_n: int | None = None, pack: int | None = None,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """Pass 2: [B, H, T_k] float32 sums over the real query rows; ``lse`` [B, H, T] (contiguous) from pass 1."""
    out = empty(query, key) if out is None else out
    target = target_of(query.device)
    config = None
    if block_m is not None:
        base = configs.lookup("column_sums", target, query.shape[3], str(query.dtype), query.shape[2],
                              query.shape[1] // key.shape[1])
        config = configs.Config(block_m, block_n or block_m, base.num_warps, base.num_stages, pack or 1)
    launch.run(plan(query, key, lse.contiguous(), problem, out, target, config))
    return out


def reference_column_sums(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, problem: Problem) -> torch.Tensor:
    """The same sums from the dense float64 reference (small shapes only)."""
    return reference(query, key, value, problem).column_sums
