"""The launch configurations of both kernels: one table per (arch family, head dim, dtype).

Every entry is compiled ahead of time for its arch by ``benchmarks/gpu_compile.py`` (a test runs a
subset, ``make gpu-compile`` the whole table): it must fit the arch's shared memory, and in
bfloat16/float16 at head dims <= 128 spill no register. An entry that would not fit takes smaller
tiles or fewer stages here, so a GPU never meets an OutOfResources at launch.

The entries were chosen from the compiler's figures alone (shared memory, registers, spills), not
from timings: no GPU was lent while they were written. Issue 30 tunes them on a GPU and writes the
measured choice back here.
"""
from __future__ import annotations

from dataclasses import dataclass

from sinkfix.capture.kernels.launch import Target

# Per-block shared memory a kernel may opt in to (CUDA programming guide, compute capabilities).
SHARED_LIMIT = {"sm80": 166_912, "sm86": 101_376, "sm90": 232_448}
# Triton's interpreter runs every operation of every program as numpy calls with a large fixed cost:
# there the fewest, largest programs are fastest (tiles up to this, a whole GQA group per program).
INTERPRETER_TILE = 512
# float32 dots on CUDA: three TF32 products per dot (about float32's accuracy, on tensor cores).
# IEEE float32 dots became FMA loops with 12-44 KB of register spills per thread (docs/gpu.md).
FLOAT32_PRECISION = "tf32x3"


@dataclass(frozen=True)
class Config:
    block_m: int  # query rows per tile
    block_n: int  # keys per tile
    num_warps: int
    num_stages: int
    pack: int = 1  # query heads of one KV head per program (GQA)


def family(capability: int) -> str:
    """The shared-memory family of a compute capability (80 A100, 86/89 consumer Ampere/Ada, 90 H100)."""
    if capability in (80, 87):
        return "sm80"
    if capability >= 90 and capability // 10 != 12:  # Hopper and datacenter Blackwell: 227 KB
        return "sm90"
    return "sm86"  # 8.6, 8.9, 12.x and anything unknown: the smallest budget, 99 KB


def head_block(head_dim: int) -> int:
    """Head dims run in power-of-two blocks of at least 16 (80 -> 128)."""
    return max(16, 1 << (head_dim - 1).bit_length())


def _entries(row_stats: Config, column_sums: Config) -> dict[str, Config]:
    return {"row_stats": row_stats, "column_sums": column_sums}


C = Config
# (family, head block <= 64 / 128 / 256, "16" for bfloat16 and float16 or "32") -> per kernel. From the
# compile check (docs/gpu.md): at d <= 128 pass 1 needs 8 warps to hold its accumulators without
# spilling (4 warps spilled 8-68 B with sinks and soft-capping); float32 (TF32x3: three products'
# operands) takes 32 x 32 tiles, where its spills are near IEEE's at the same tiles.
TABLE: dict[tuple[str, int, str], dict[str, Config]] = {
    ("sm90", 64, "16"): _entries(C(128, 64, 8, 3), C(64, 64, 4, 3)),
    ("sm90", 128, "16"): _entries(C(128, 64, 8, 3), C(128, 64, 8, 3)),
    ("sm90", 256, "16"): _entries(C(64, 32, 8, 2), C(64, 64, 4, 2)),
    ("sm90", 64, "32"): _entries(C(32, 32, 4, 2), C(32, 32, 4, 2)),
    ("sm90", 128, "32"): _entries(C(32, 32, 4, 2), C(32, 32, 4, 2)),
    ("sm90", 256, "32"): _entries(C(32, 32, 4, 2), C(32, 32, 4, 2)),
    ("sm80", 64, "16"): _entries(C(128, 64, 8, 3), C(64, 64, 4, 3)),
    ("sm80", 128, "16"): _entries(C(64, 64, 8, 3), C(64, 64, 4, 3)),
    ("sm80", 256, "16"): _entries(C(64, 32, 8, 2), C(64, 32, 4, 2)),
    ("sm80", 64, "32"): _entries(C(32, 32, 4, 2), C(32, 32, 4, 2)),
    ("sm80", 128, "32"): _entries(C(32, 32, 4, 2), C(32, 32, 4, 2)),
    ("sm80", 256, "32"): _entries(C(16, 32, 4, 1), C(32, 16, 4, 1)),
    ("sm86", 64, "16"): _entries(C(64, 64, 4, 2), C(64, 64, 4, 2)),
    ("sm86", 128, "16"): _entries(C(64, 32, 8, 2), C(64, 32, 4, 2)),
    ("sm86", 256, "16"): _entries(C(32, 32, 4, 2), C(32, 32, 4, 2)),
    ("sm86", 64, "32"): _entries(C(32, 32, 4, 2), C(32, 32, 4, 2)),
    ("sm86", 128, "32"): _entries(C(32, 32, 4, 2), C(32, 32, 4, 2)),
    ("sm86", 256, "32"): _entries(C(16, 32, 4, 1), C(32, 16, 4, 1)),
}


def dtype_class(dtype_name: str) -> str:
    return "32" if dtype_name.endswith("float32") else "16"


def lookup(kernel: str, target: Target, head_dim: int, dtype_name: str, n_queries: int = 1, groups: int = 1) -> Config:
    """The configuration ``kernel`` ("row_stats" or "column_sums") launches with on ``target``."""
    if target.interpreted:
        tile = min(INTERPRETER_TILE, head_block(n_queries))
        return Config(tile, tile, 4, 1, pack=1 << (groups - 1).bit_length())
    block = min(256, max(64, head_block(head_dim)))
    return TABLE[(family(target.capability), block, dtype_class(dtype_name))][kernel]


def precision(target: Target, dtype_name: str) -> str:
    """``input_precision`` of the kernels' dots: IEEE in the interpreter (float32 operands there), TF32x3
    for float32 on CUDA, and the tensor cores' own for bfloat16/float16 (the name is then unused)."""
    if target.interpreted:
        return "ieee"
    return FLOAT32_PRECISION if dtype_class(dtype_name) == "32" else "tf32"
