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
causal tile, keys beyond a sliding window, right padding) are never loaded, and of the tiles
visited only the band's edges (the diagonal, a window's far edge, the last key tile of a padded
sequence) are masked: the interior tiles run without a mask, as in FlashAttention.

No probability tile is written: per row the kernel stores lse, H, the sink mass (float32) and O.
H and the sink mass are 0 on padding rows (i >= row_lengths[b]), so a plain sum over rows counts
the real ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sinkfix.capture.kernels import configs, launch
from sinkfix.capture.kernels.launch import Launch, Target, target_of
from sinkfix.capture.kernels.problem import Problem, reference


@dataclass(frozen=True)
class RowStats:
    lse: torch.Tensor  # [B, H, T] float32; -inf for a row that sees no key
    entropy: torch.Tensor  # [B, H, T] float32 nats, the sink column included; 0 on padding rows
    sink_mass: torch.Tensor | None  # [B, H, T] float32; 0 on padding rows
    output: torch.Tensor  # [B, T, H, d_v] in the value dtype; 0 for a row that sees no key


@triton.jit
def _tanh(x):
    # Triton's interpreter has no libdevice tanh: tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|).
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _load_tile(ptrs, cols, dims, n_keys, D: tl.constexpr, BLOCK: tl.constexpr, MASKED: tl.constexpr):
    """A [keys, dims] tile: masked on the band's edges (keys past the end) and where the head dim is padded."""
    if MASKED:
        mask = (cols < n_keys)[:, None]
        if BLOCK != D:
            mask = mask & (dims[None, :] < D)
        tile = tl.load(ptrs, mask=mask, other=0.0)
    elif BLOCK != D:
        tile = tl.load(ptrs, mask=dims[None, :] < D, other=0.0)
    else:
        tile = tl.load(ptrs)
    return tile


@triton.jit
def _key_tile(acc, m_i, l_i, a_i, q, k_base, v_base, k_offs, v_offs, n0, rows, cols0, dims, dims_v, klen, n_keys,
              left, right, scale, softcap, skt, svt,
              SOFTCAP: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, D_QK: tl.constexpr,
              D_V: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, MASKED: tl.constexpr):
    """One key tile of the online softmax; ``MASKED`` only for tiles on the band's edges."""
    cols = n0 + cols0
    step = tl.cast(n0, tl.int64)  # the loop index is a plain int in the interpreter
    k = _load_tile(k_base + step * skt + k_offs, cols, dims, n_keys, D_QK, BLOCK_D, MASKED)
    if UPCAST:  # the interpreter's bfloat16 dot is wrong; float32 operands give the same products
        k = k.to(tl.float32)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
    if SOFTCAP:
        s = _tanh(s / softcap) * softcap
    if MASKED:
        seen = (cols[None, :] < klen) & (cols[None, :] >= rows[:, None] - left) & (cols[None, :] <= rows[:, None] + right)
        s = tl.where(seen, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen nothing yet
        shifted = tl.where(seen, s - m_safe[:, None], 0.0)
        p = tl.where(seen, tl.exp(shifted), 0.0)
    else:
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = m_new  # every key of the tile is visible: the maximum is finite
        shifted = s - m_safe[:, None]
        p = tl.exp(shifted)
    alpha = tl.exp(m_i - m_safe)
    # (M_old - M_new) l, written so that a row with l = 0 (and M_old = -inf) gives 0, not nan.
    drift = (tl.where(l_i > 0, m_i, m_safe) - m_safe) * l_i
    a_i = alpha * (a_i + drift) + tl.sum(p * shifted, 1)
    l_i = alpha * l_i + tl.sum(p, 1)
    v = _load_tile(v_base + step * svt + v_offs, cols, dims_v, n_keys, D_V, BLOCK_DV, MASKED)
    weights = p.to(v.dtype)  # as eager: the probabilities in the model dtype, then @ V
    if UPCAST:
        weights, v = weights.to(tl.float32), v.to(tl.float32)
    acc = acc * alpha[:, None] + tl.dot(weights, v, input_precision=PRECISION)
    return acc, m_new, l_i, a_i


@triton.jit
def _row_stats_kernel(
    q_ptr, k_ptr, v_ptr, sink_ptr, klen_ptr, rlen_ptr, lse_ptr, ent_ptr, mass_ptr, out_ptr,
    sqb, sqh, sqt, sqd, skb, skh, skt, skd, svb, svh, svt, svd, ssb, ssh, sst,
    sob, sot, soh, sod,
    heads, kv_heads, groups, n_queries, n_keys, scale, softcap, left, right,
    D_QK: tl.constexpr, D_V: tl.constexpr,
    HAS_SINK: tl.constexpr, SOFTCAP: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    PACK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr,
):
    # A program takes BLOCK_M query positions of PACK query heads sharing one KV head (GQA), stacked
    # as PACK * BLOCK_M rows: each K/V tile is loaded once for the group. Tile indices are int32;
    # int64 only in the offsets that can pass 2^31 (sequence and head bases, position x stride).
    slots = (groups + PACK - 1) // PACK  # not tl.cdiv: in the interpreter every nested jit call costs ms
    pid = tl.program_id(0)  # (sequence, head) slots on axis 0: up to 2^31 programs, not 65,535
    b = pid // (kv_heads * slots)
    kv = (pid % (kv_heads * slots)) // slots
    g0 = (pid % slots) * PACK
    m0 = tl.program_id(1) * BLOCK_M
    r = tl.arange(0, PACK * BLOCK_M)
    member = g0 + r // BLOCK_M
    # A member past the group (the last program of a group that PACK does not divide) reads the
    # group's last head, in bounds, and is never stored.
    head = (kv * groups + tl.minimum(member, groups - 1)).to(tl.int64)
    rows = m0 + r % BLOCK_M  # query positions
    row_ok = (rows < n_queries) & (member < groups)
    dims = tl.arange(0, BLOCK_D)
    dims_v = tl.arange(0, BLOCK_DV)
    b64 = b.to(tl.int64)
    q = tl.load(q_ptr + b64 * sqb + head[:, None] * sqh + rows[:, None].to(tl.int64) * sqt + dims[None, :] * sqd,
                mask=(rows < n_queries)[:, None] & (dims[None, :] < D_QK), other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    klen = tl.load(klen_ptr + b)
    rlen = tl.load(rlen_ptr + b)

    if HAS_SINK:
        m_i = tl.load(sink_ptr + b64 * ssb + head * ssh + rows * sst, mask=row_ok, other=0.0).to(tl.float32)
        sink = m_i
        l_i = tl.full([PACK * BLOCK_M], 1.0, tl.float32)
    else:
        m_i = tl.full([PACK * BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.full([PACK * BLOCK_M], 0.0, tl.float32)
    a_i = tl.full([PACK * BLOCK_M], 0.0, tl.float32)
    acc = tl.full([PACK * BLOCK_M, BLOCK_DV], 0.0, tl.float32)

    # Only the key tiles the row tile's band reaches: [m0 - left, m0 + BLOCK_M - 1 + right], within klen.
    lo = (tl.maximum(m0 - left, 0) // BLOCK_N) * BLOCK_N
    hi = tl.minimum(klen, m0 + BLOCK_M + right)
    # Interior tiles: every key visible from every row (n0 >= last row - left, n0 + BLOCK_N - 1 <= m0 + right,
    # n0 + BLOCK_N <= klen). Their tiles [inner, outer) need no mask; the edges on either side do.
    inner = tl.minimum(tl.maximum((m0 + BLOCK_M - 1 - left + BLOCK_N - 1) // BLOCK_N * BLOCK_N, lo), hi)
    outer = tl.maximum((tl.minimum(m0 + right + 1, klen) // BLOCK_N) * BLOCK_N, inner)
    cols0 = tl.arange(0, BLOCK_N)
    k_base = k_ptr + b64 * skb + kv.to(tl.int64) * skh
    v_base = v_ptr + b64 * svb + kv.to(tl.int64) * svh
    k_offs = cols0[:, None] * skt + dims[None, :] * skd  # within a tile: int32
    v_offs = cols0[:, None] * svt + dims_v[None, :] * svd
    for n0 in tl.range(lo, inner, BLOCK_N):
        acc, m_i, l_i, a_i = _key_tile(acc, m_i, l_i, a_i, q, k_base, v_base, k_offs, v_offs, n0, rows, cols0,
                                       dims, dims_v, klen, n_keys, left, right, scale, softcap, skt, svt, SOFTCAP,
                                       PRECISION, UPCAST, D_QK, D_V, BLOCK_D, BLOCK_DV, True)
    for n0 in tl.range(inner, outer, BLOCK_N):
        acc, m_i, l_i, a_i = _key_tile(acc, m_i, l_i, a_i, q, k_base, v_base, k_offs, v_offs, n0, rows, cols0,
                                       dims, dims_v, klen, n_keys, left, right, scale, softcap, skt, svt, SOFTCAP,
                                       PRECISION, UPCAST, D_QK, D_V, BLOCK_D, BLOCK_DV, False)
    for n0 in tl.range(outer, hi, BLOCK_N):
        acc, m_i, l_i, a_i = _key_tile(acc, m_i, l_i, a_i, q, k_base, v_base, k_offs, v_offs, n0, rows, cols0,
                                       dims, dims_v, klen, n_keys, left, right, scale, softcap, skt, svt, SOFTCAP,
                                       PRECISION, UPCAST, D_QK, D_V, BLOCK_D, BLOCK_DV, True)

    some = l_i > 0
    l_safe = tl.where(some, l_i, 1.0)
    log_l = tl.log(l_safe)
    lse = tl.where(some, m_i + log_l, float("-inf"))
    real = rows < rlen
    entropy = tl.where(some & real, log_l - a_i / l_safe, 0.0)
    base = (b64 * heads + head) * n_queries + rows
    tl.store(lse_ptr + base, lse, mask=row_ok)
    tl.store(ent_ptr + base, entropy, mask=row_ok)
    if HAS_SINK:
        tl.store(mass_ptr + base, tl.where(real, tl.exp(sink - lse), 0.0), mask=row_ok)
    out = acc / l_safe[:, None]
    tl.store(out_ptr + b64 * sob + rows[:, None].to(tl.int64) * sot + head[:, None] * soh + dims_v[None, :] * sod,
             out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & (dims_v[None, :] < D_V))


def empty(query: torch.Tensor, value: torch.Tensor, sinks: bool) -> RowStats:
    """Fresh result buffers for one layer's shapes (a forward reuses them for every layer)."""
    batch, heads, n_queries, _ = query.shape
    stats = dict(device=query.device, dtype=torch.float32)
    return RowStats(torch.empty(batch, heads, n_queries, **stats), torch.empty(batch, heads, n_queries, **stats),
                    torch.empty(batch, heads, n_queries, **stats) if sinks else None,
                    torch.empty(batch, n_queries, heads, value.shape[3], device=query.device, dtype=value.dtype))


def plan(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, problem: Problem, out: RowStats,
         target: Target, config: configs.Config | None = None) -> Launch:
    """The launch of pass 1 for these tensors on ``target`` (the compile check plans the same)."""
    batch, heads, n_queries, d_qk = query.shape
    kv_heads, n_keys, d_v = key.shape[1], key.shape[2], value.shape[3]
    groups = heads // kv_heads
    dtype = str(query.dtype)
    config = config or configs.lookup("row_stats", target, max(d_qk, d_v), dtype, n_queries, groups)
    sinks = problem.sinks if problem.sinks is not None else out.lse  # a placeholder pointer, never read
    sink_strides = sinks.stride() if problem.sinks is not None else (0, 0, 0)
    grid = (batch * kv_heads * triton.cdiv(groups, config.pack), triton.cdiv(n_queries, config.block_m))
    args = (query, key, value, sinks, problem.key_lengths, problem.row_lengths, out.lse, out.entropy,
            out.sink_mass if out.sink_mass is not None else out.lse, out.output,
            *query.stride(), *key.stride(), *value.stride(), *sink_strides, *out.output.stride(),
            heads, kv_heads, groups, n_queries, n_keys, float(problem.scale),
            float(problem.softcap or 1.0), int(problem.left), int(problem.right))
    kwargs = dict(
        D_QK=d_qk, D_V=d_v, HAS_SINK=problem.sinks is not None, SOFTCAP=problem.softcap is not None,
        PRECISION=configs.precision(target, dtype), UPCAST=target.interpreted and query.dtype != torch.float32,
        PACK=config.pack, BLOCK_M=config.block_m, BLOCK_N=config.block_n,
        BLOCK_D=configs.head_block(d_qk), BLOCK_DV=configs.head_block(d_v),
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return Launch(_row_stats_kernel, grid, args, kwargs)


def row_stats(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, problem: Problem,
              block_m: int | None = None, block_n: int | None = None, pack: int | None = None,
              out: RowStats | None = None) -> RowStats:
    """Pass 1 over queries [B, H, T, d] (any strides), keys [B, H_kv, T, d], values [B, H_kv, T, d_v].

    Tiles and packing come from ``configs`` unless given (the kernel tests use small tiles);
    ``pack`` (a power of two) query heads of one KV head share a program.
    """
    out = out or empty(query, value, problem.sinks is not None)
    target = target_of(query.device)
    config = None
    if block_m is not None:
        base = configs.lookup("row_stats", target, max(query.shape[3], value.shape[3]), str(query.dtype),
                              query.shape[2], query.shape[1] // key.shape[1])
        config = configs.Config(block_m, block_n or block_m, base.num_warps, base.num_stages, pack or 1)
    launch.run(plan(query, key, value, problem, out, target, config))
    return out


def reference_row_stats(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, problem: Problem) -> RowStats:
    """The same four results from the dense float64 reference (small shapes only)."""
    ref = reference(query, key, value, problem)
    return RowStats(ref.lse, ref.entropy, ref.sink_mass, ref.output)
