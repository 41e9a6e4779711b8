"""One kernel launch as data: what the launchers would run, and the one place that runs it.

Each launcher (``row_stats.plan``, ``column_sums.plan``) returns a ``Launch``: the jit function, its
grid, its positional arguments and its keyword arguments (constexprs, ``num_warps``,
``num_stages``). The real path runs it with ``run``; the ahead-of-time compile check
(``benchmarks/gpu_compile.py``) compiles the same object for sm_80 and sm_90 without a GPU, so the
two cannot drift apart. The launch budget (``benchmarks/budget.py``) counts the calls of ``run``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Target:
    """What a launch is planned for: ``cuda`` with a compute capability (80, 90, ...) or the interpreter."""

    backend: str  # "cuda" or "interpreter"
    capability: int = 0  # major * 10 + minor, e.g. 80 for an A100, 90 for an H100/H200

    @property
    def interpreted(self) -> bool:
        return self.backend == "interpreter"


INTERPRETER = Target("interpreter")
_capabilities: dict[int, int] = {}


def target_of(device: torch.device) -> Target:
    """The target for tensors on ``device``: CUDA's capability (a host query, no sync), else the interpreter."""
    if device.type != "cuda":
        return INTERPRETER
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _capabilities:
        major, minor = torch.cuda.get_device_capability(index)
        _capabilities[index] = major * 10 + minor
    return Target("cuda", _capabilities[index])


@dataclass(frozen=True)
class Launch:
    kernel: object  # a triton JITFunction (or the interpreter's stand-in for it)
    grid: tuple[int, ...]
    args: tuple
    kwargs: dict[str, object] = field(default_factory=dict)  # constexprs, num_warps, num_stages

    @property
    def name(self) -> str:
        return getattr(self.kernel, "__name__", None) or getattr(getattr(self.kernel, "fn", None), "__name__", "?")


def run(launch: Launch) -> None:
    """Launch it (asynchronously on CUDA)."""
    launch.kernel[launch.grid](*launch.args, **launch.kwargs)
