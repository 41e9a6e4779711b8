"""Both fused kernels against their float64 reference at small shapes, on whatever device is given.

The first thing a GPU run checks: the launchers with the launch table's configurations for the
device, on the cases the interpreter tests cover (causal GQA with right padding, a sliding window
with soft-capping, learned sinks), in float32 and bfloat16. float32 must agree within 1e-5 of each
array's largest value (the same bound as triton against blocked); bfloat16 statistics within 1e-4
(its logits are exact products, summed in another order) and its output within 3e-2 (rounded to
bfloat16, as eager's). All relative to the largest value of each array.
"""
from __future__ import annotations

import torch

TOLERANCE = {"float32": (1e-5, 1e-5), "bfloat16": (1e-4, 3e-2)}  # (statistics, output)


def _cases(device: str, dtype: torch.dtype, n: int):
    from sinkfix.capture.kernels.problem import Problem

    generator = torch.Generator().manual_seed(0)

    def qkv(b: int, h: int, kv: int, n: int, d: int):
        q, k, v = (torch.randn(b, heads, n, d, generator=generator) * scale
                   for heads, scale in ((h, 2.0), (kv, 2.0), (kv, 1.0)))
        return q.to(device, dtype), k.to(device, dtype), v.to(device, dtype)

    def problem(lengths: list[int], left: int, right: int, softcap=None, sinks=None) -> Problem:
        counts = torch.tensor(lengths, dtype=torch.int32, device=device)
        return Problem(scale=0.125, left=left, right=right, key_lengths=counts, row_lengths=counts, softcap=softcap,
                       sinks=sinks)

    yield "causal GQA, padded", qkv(2, 6, 2, n, 64), problem([n, n * 3 // 5], n - 1, 0)
    yield "window, soft-capped", qkv(2, 4, 2, n, 64), problem([n, n * 4 // 5], n // 6, 0, softcap=20.0)
    sinks = torch.randn(1, 4, 1, generator=generator).to(device).expand(2, 4, n)
    yield "learned sinks, head dim 128", qkv(2, 4, 4, n, 128), problem([n, n * 2 // 3], n - 1, 0, sinks=sinks)
    yield "bidirectional, head dim 80", qkv(1, 4, 2, n, 80), problem([n], n - 1, n - 1)


def _relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    finite = torch.isfinite(reference)
    if not bool((torch.isfinite(ours) == finite).all()):
        return float("inf")
    gap = (ours.double() - reference)[finite].abs().max()
    return float(gap / reference[finite].abs().max().clamp_min(1e-30))


def compare(device: str, dtype_name: str, n: int = 300) -> dict:
    from sinkfix.capture.kernels.column_sums import column_sums
    from sinkfix.capture.kernels.problem import reference
    from sinkfix.capture.kernels.row_stats import row_stats

    worst = {"lse": 0.0, "entropy": 0.0, "sink_mass": 0.0, "column_sums": 0.0, "output": 0.0}
    cases = []
    for name, (q, k, v), problem in _cases(device, getattr(torch, dtype_name), n):
        stats = row_stats(q, k, v, problem)
        sums = column_sums(q, k, stats.lse, problem)
        expected = reference(q, k, v, problem)
        found = {"lse": _relative(stats.lse, expected.lse), "entropy": _relative(stats.entropy, expected.entropy),
                 "column_sums": _relative(sums, expected.column_sums),
                 "output": _relative(stats.output, expected.output)}
        if problem.sinks is not None:
            found["sink_mass"] = _relative(stats.sink_mass, expected.sink_mass)
        worst = {key: max(worst[key], found.get(key, 0.0)) for key in worst}
        cases.append(name)
    if device == "cuda":
        torch.cuda.synchronize()
    statistics, output = TOLERANCE[dtype_name]
    ok = max(v for k, v in worst.items() if k != "output") <= statistics and worst["output"] <= output
    return {"row": f"kernels vs float64 reference, {dtype_name}", "T": n, "cases": cases, "max_relative": worst,
            "tolerance_statistics": statistics, "tolerance_output": output, "ok": ok}
