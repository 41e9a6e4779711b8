"""`make gpu-compile`: every kernel variant the launchers issue on CUDA, compiled ahead of time, no GPU needed.

For sm_80 (A100) and sm_90 (H100/H200), float32/bfloat16/float16, head dims 64/80/128/256, with and
without learned sinks and soft-capping, each launcher plans its launch for CPU stand-in tensors of
the shapes transformers hands over (``row_stats.plan``, ``column_sums.plan``: the same function the
real launch runs, so this cannot drift from the code), Triton's own binder turns that into a
signature, and ``triton.compile`` builds PTX and a cubin with the ptxas inside the triton wheel.
One record per compile: kernel, arch, dtype, head_dim, variant, shared_bytes, shared_limit,
registers, spill_bytes, mma ("wgmma", "mma.sync" or "none") and ok.

A variant is not ok when it does not compile, exceeds its arch's shared memory, spills in
bfloat16/float16 at d <= 128, or has no tensor-core instruction in bfloat16/float16.
``--subset`` compiles a representative few (the test in the suite); ``--json PATH`` writes the records.
Runs in a fresh Triton cache (every variant really compiles, and ptxas reports on it) and without
``TRITON_INTERPRET`` (its interpreter would replace the kernels).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ARCHS = (80, 90)
DTYPES = ("float32", "bfloat16", "float16")
HEAD_DIMS = (64, 80, 128, 256)
# Learned sinks never reach pass 2 (it reads pass 1's lse, sink included): its variants are the soft-capping ones.
VARIANTS = {"row_stats": ("plain", "sinks", "softcap", "sinks+softcap"), "column_sums": ("plain", "softcap")}
SUBSET = (  # (kernel, arch, dtype, head_dim, variant): both MMA kinds, both kernels, the tightest fits
    ("row_stats", 90, "bfloat16", 128, "sinks+softcap"),
    ("row_stats", 80, "float16", 64, "plain"),
    ("row_stats", 80, "bfloat16", 256, "plain"),
    ("column_sums", 80, "bfloat16", 128, "softcap"),
    ("column_sums", 90, "float16", 64, "plain"),
)
STAND_IN = dict(batch=1, heads=4, kv_heads=2, tokens=999)  # GQA; T not a multiple of 16, as in general


def variants(subset: bool = False, archs: tuple[int, ...] = ARCHS) -> list[tuple[str, int, str, int, str]]:
    if subset:
        return list(SUBSET)
    return [(kernel, arch, dtype, d, variant) for kernel, arch, dtype, d in
            itertools.product(VARIANTS, archs, DTYPES, HEAD_DIMS) for variant in VARIANTS[kernel]]


def plan(kernel: str, arch: int, dtype: str, head_dim: int, variant: str):
    """The launch the fused path would issue for a layer of this shape, from the launchers themselves."""
    import torch

    from sinkfix.capture.kernels import column_sums, row_stats
    from sinkfix.capture.kernels.launch import Target
    from sinkfix.capture.kernels.problem import Problem

    b, h, kv, n = (STAND_IN[k] for k in ("batch", "heads", "kv_heads", "tokens"))
    kind = getattr(torch, dtype)
    # transformers hands over [B, H, T, d] views of [B, T, H, d] projections (values), and RoPE'd q/k.
    query = torch.empty(b, h, n, head_dim, dtype=kind)
    key = torch.empty(b, kv, n, head_dim, dtype=kind)
    value = torch.empty(b, n, kv, head_dim, dtype=kind).transpose(1, 2)
    lengths = torch.full((b,), n, dtype=torch.int32)
    sinks = torch.zeros(1, h, 1).expand(b, h, n) if "sinks" in variant else None
    problem = Problem(scale=head_dim ** -0.5, left=n - 1, right=0, key_lengths=lengths, row_lengths=lengths,
                      softcap=50.0 if "softcap" in variant else None, sinks=sinks)
    target = Target("cuda", arch)
    out = row_stats.empty(query, value, sinks is not None)
    if kernel == "row_stats":
        return row_stats.plan(query, key, value, problem, out, target)
    return column_sums.plan(query, key, out.lse, problem, column_sums.empty(query, key), target)


def compile_one(case: tuple[str, int, str, int, str]) -> dict:
    """Compile one variant for its arch; the record says what ptxas and Triton report."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    from sinkfix.capture.kernels import configs

    kernel, arch, dtype, head_dim, variant = case
    record = dict(kernel=kernel, arch=f"sm_{arch}", dtype=dtype, head_dim=head_dim, variant=variant,
                  shared_limit=configs.SHARED_LIMIT[configs.family(arch)], triton=triton.__version__)
    started = time.perf_counter()
    try:
        launch = plan(kernel, arch, dtype, head_dim, variant)
        fn = launch.kernel
        record.update(grid_programs=launch.grid[0] * launch.grid[1], block_m=launch.kwargs["BLOCK_M"],
                      block_n=launch.kwargs["BLOCK_N"], num_warps=launch.kwargs["num_warps"],
                      num_stages=launch.kwargs["num_stages"], precision=launch.kwargs["PRECISION"])
        target = GPUTarget("cuda", arch, 32)
        backend = make_backend(target)
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        kwargs = dict(launch.kwargs, debug=False)
        bound, specialization, options = binder(*launch.args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
        knobs.nvidia.dump_ptxas_log = True
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                                      options=options.__dict__)
        record.update(_ptxas(log.getvalue()), shared_bytes=int(compiled.metadata.shared),
                      mma=_mma(compiled.asm["ptx"]))
        record["error"] = None
    except Exception as error:  # noqa: BLE001 - a failed compile is a record, not a crash of the table
        record.update(shared_bytes=None, registers=None, spill_bytes=None, mma="none",
                      error=f"{type(error).__name__}: {error}"[:1000])
    record["compile_s"] = round(time.perf_counter() - started, 2)
    record["ok"] = not reasons(record)
    return record


def _ptxas(log: str) -> dict:
    registers = re.findall(r"Used (\d+) registers", log)
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    stores = sum(int(s) for s, _ in spills)
    loads = sum(int(l) for _, l in spills)
    return dict(registers=max((int(r) for r in registers), default=None), spill_bytes=stores + loads,
                spill_stores=stores, spill_loads=loads)


def _mma(ptx: str) -> str:
    if "wgmma.mma_async" in ptx:
        return "wgmma"
    return "mma.sync" if re.search(r"\bmma\.sync\b", ptx) else "none"


def reasons(record: dict) -> list[str]:
    """Why a record fails the check (empty: it passes)."""
    if record.get("error"):
        return [f"does not compile: {record['error'][:200]}"]
    found = []
    if record["shared_bytes"] > record["shared_limit"]:
        found.append(f"needs {record['shared_bytes']:,} B of shared memory, over {record['arch']}'s {record['shared_limit']:,}")
    half = record["dtype"] != "float32"
    if half and record["head_dim"] <= 128 and (record["spill_bytes"] or 0) > 0:
        found.append(f"spills {record['spill_bytes']} B per thread")
    if half and record["mma"] == "none":
        found.append("no tensor-core instruction")
    return found


def compile_all(cases: list[tuple], jobs: int = 1) -> list[dict]:
    """Compile every case in a fresh Triton cache, ``jobs`` at a time."""
    os.environ.pop("TRITON_INTERPRET", None)  # the interpreter would stand in for the jit functions
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton 3.9's default, said (it warns otherwise)
    with tempfile.TemporaryDirectory(prefix="sinkfix-gpu-compile-") as cache:
        os.environ["TRITON_CACHE_DIR"] = cache
        if jobs <= 1:
            return [compile_one(case) for case in cases]
        with ProcessPoolExecutor(jobs) as pool:
            return list(pool.map(compile_one, cases))


def table(records: list[dict]) -> str:
    lines = [f"{'kernel':<12} {'arch':<6} {'dtype':<9} {'d':>4} {'variant':<14} {'tiles':<9} {'w/s':<4} "
             f"{'shared':>8} {'limit':>8} {'regs':>4} {'spill':>6} {'mma':<8} ok"]
    for r in records:
        tiles = f"{r.get('block_m', '?')}x{r.get('block_n', '?')}"
        ws = f"{r.get('num_warps', '?')}/{r.get('num_stages', '?')}"
        lines.append(f"{r['kernel']:<12} {r['arch']:<6} {r['dtype']:<9} {r['head_dim']:>4} {r['variant']:<14} "
                     f"{tiles:<9} {ws:<4} {r['shared_bytes'] or 0:>8} {r['shared_limit']:>8} {r['registers'] or 0:>4} "
                     f"{r['spill_bytes'] if r['spill_bytes'] is not None else '-':>6} {r['mma']:<8} "
                     f"{'yes' if r['ok'] else 'NO: ' + '; '.join(reasons(r))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", action="store_true", help="a representative few (the suite's test)")
    parser.add_argument("--json", type=Path, help="write the records here")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compiles in parallel")
    parser.add_argument("--only", help="comma-separated filters on kernel,arch,dtype (e.g. row_stats,sm_80)")
    parser.add_argument("--archs", default=",".join(map(str, ARCHS)),
                        help="compute capabilities, e.g. 80,86,90 (86: the 99 KB consumer family)")
    args = parser.parse_args(argv)
    cases = variants(args.subset, tuple(int(a) for a in args.archs.split(",")))
    if args.only:
        wanted = args.only.split(",")
        cases = [c for c in cases if all(w in (c[0], f"sm_{c[1]}", c[2], str(c[3]), c[4]) or w == "" for w in wanted)]
    started = time.perf_counter()
    records = compile_all(cases, args.jobs)
    print(table(records))
    bad = [r for r in records if not r["ok"]]
    print(f"\n{len(records) - len(bad)} of {len(records)} variants ok in {time.perf_counter() - started:.0f} s "
          f"(triton {records[0]['triton'] if records else '?'})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.pop("TRITON_INTERPRET", None)  # before any kernel module is imported
    sys.exit(main())
