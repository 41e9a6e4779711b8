"""Fused attention statistics in Triton: never a probability tile in memory.

One kernel per module, each with a plain torch reference beside it:
- ``row_stats``: pass 1, per query tile over key tiles: the log-sum-exp, the row entropy, the
  learned-sink mass and the attention output, rescaled online as FlashAttention does;
- ``column_sums``: pass 2, per key tile over query tiles: p = exp(s - lse) recomputed and summed
  over the real (unpadded) query rows, per query head and per sequence.
``problem`` describes what both compute (the visible band of keys, lengths, scale, soft-capping,
learned sinks) and holds the dense torch reference they are tested against.

Nothing here imports triton at package import: a CPU-only install never needs it. On a machine
without CUDA the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set before the
kernel modules are imported), which is how the tests run them.
"""
from __future__ import annotations

import importlib.util
import os


def interpreting() -> bool:
    """True when Triton runs kernels in its interpreter (on CPU tensors, slowly): tests and smoke runs."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None
