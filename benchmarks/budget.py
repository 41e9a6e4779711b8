"""Launch and host-synchronisation budgets of analyze()/analyze_many(): counted, not timed.

``counting()`` records, while active:
- ``launches``: every fused-kernel launch (``sinkfix.capture.kernels.launch.run``), by kernel (the
  launch itself is not looked into: Triton's interpreter copies its arguments with torch calls);
- ``syncs``: every call that makes the host wait for a CUDA device, made during a forward pass
  (``pipeline._forward``): ``.item()``, ``.tolist()``, ``bool()``/``int()``/``float()`` of a tensor,
  ``.numpy()``, ``.cpu()`` and blocking ``.to("cpu")``/``copy_``, ``nonzero``, ``torch.equal``,
  ``torch.cuda.synchronize``, and ``torch.tensor(..., device=...)`` (a blocking upload);
  ``syncs_outside`` the same calls outside the forwards (assembly on CPU tensors);
- ``handler_ops``: the torch operators the fused path's per-layer handler runs besides its two
  launches (aten operators that launch work: views and allocations are left out).

On CUDA (``device_only=True``) only calls on CUDA tensors count: the real synchronisations. On the
CPU, where the tests run the kernels through Triton's interpreter, every such call counts: the
calls that would synchronise if the tensors were on a GPU, and some that would not (reads of small
CPU tensors), so the CPU count is an upper bound.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, ExitStack
from dataclasses import dataclass, field
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_T = torch.Tensor
_READS = {_T.item: "item", _T.tolist: "tolist", _T.__bool__: "bool", _T.__int__: "int", _T.__float__: "float",
          _T.__index__: "index", _T.numpy: "numpy", _T.cpu: "cpu", _T.nonzero: "nonzero", torch.nonzero: "nonzero",
          torch.equal: "equal", torch.allclose: "allclose"}
_ALLOCATIONS = {"empty", "empty_strided", "empty_like", "lift_fresh", "detach", "alias"}


@dataclass
class Budget:
    forwards: int = 0
    layers: int = 0  # layers the fused handler ran
    launches: Counter = field(default_factory=Counter)
    syncs: Counter = field(default_factory=Counter)
    syncs_outside: Counter = field(default_factory=Counter)
    handler_ops: Counter = field(default_factory=Counter)
    launching: bool = False  # inside a launch: not counted

    def per_forward(self) -> dict[str, float]:
        n = max(self.forwards, 1)
        return {"launches": sum(self.launches.values()) / n, "syncs": sum(self.syncs.values()) / n,
                "handler_ops_per_layer": sum(self.handler_ops.values()) / max(self.layers, 1)}


def _copy_kind(func, args: tuple, kwargs: dict, device_only: bool) -> str | None:
    """"to_cpu" or "upload" for a blocking copy between host and device, else None.

    On CUDA the devices decide. On the CPU every tensor is a host tensor, so only what the code
    names as a move to the host counts (``.to("cpu")``): a ``.to(device)`` is a move to wherever
    the model is, a no-op here and a device-to-device no-op on a GPU.
    """
    if kwargs.get("non_blocking") or (func is _T.to and any(a is True for a in args[1:])):
        return None
    source = args[0]
    if func is _T.copy_:
        if not (len(args) > 1 and isinstance(args[1], torch.Tensor)):
            return None
        source, target = args[1], args[0].device
    else:
        target = kwargs.get("device", next((a for a in args[1:] if isinstance(a, (str, torch.device))), None))
    if target is None:
        return None
    if not device_only:
        return "to_cpu" if target == "cpu" else None
    kinds = (source.device.type, torch.device(target).type)
    return {("cuda", "cpu"): "to_cpu", ("cpu", "cuda"): "upload"}.get(kinds)


class _Reads(TorchFunctionMode):
    def __init__(self, budget: Budget, device_only: bool, phase: list[str]) -> None:
        super().__init__()
        self.budget, self.device_only, self.phase = budget, device_only, phase

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.budget.launching:
            return func(*args, **kwargs)
        name = _READS.get(func)
        if name is not None and self.device_only:
            name = name if any(isinstance(a, torch.Tensor) and a.device.type == "cuda" for a in args) else None
        if func in (_T.to, _T.copy_):
            name = _copy_kind(func, args, kwargs, self.device_only)
        elif func in (torch.tensor, torch.as_tensor) and kwargs.get("device") is not None:
            name = "upload" if not self.device_only or torch.device(kwargs["device"]).type == "cuda" else None
        if name is not None:
            (self.budget.syncs if self.phase else self.budget.syncs_outside)[name] += 1
        return func(*args, **kwargs)


class _Ops(TorchDispatchMode):
    def __init__(self, budget: Budget) -> None:
        super().__init__()
        self.budget = budget

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not self.budget.launching and not func.is_view and name not in _ALLOCATIONS:
            self.budget.handler_ops[name] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def counting(device_only: bool = False) -> Iterator[Budget]:
    """Count launches, synchronisations and the handler's operators of the analyses run inside."""
    from sinkfix.analysis import pipeline
    from sinkfix.capture import fast_path
    from sinkfix.capture.kernels import launch

    budget, phase = Budget(), []
    real_forward, real_attend, real_sync = pipeline._forward, fast_path._Run.attend, torch.cuda.synchronize
    real_run = launch.run

    def forward(*args, **kwargs):
        budget.forwards += 1
        phase.append("forward")
        try:
            return real_forward(*args, **kwargs)
        finally:
            phase.pop()

    def attend(self, *args, **kwargs):
        budget.layers += 1
        with _Ops(budget):
            return real_attend(self, *args, **kwargs)

    def run(fired: launch.Launch) -> None:
        budget.launches[fired.name] += 1
        budget.launching = True
        try:
            real_run(fired)
        finally:
            budget.launching = False

    def synchronize(*args, **kwargs):
        (budget.syncs if phase else budget.syncs_outside)["cuda.synchronize"] += 1
        return real_sync(*args, **kwargs)

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(pipeline, "_forward", forward))
        stack.enter_context(mock.patch.object(fast_path._Run, "attend", attend))
        stack.enter_context(mock.patch.object(torch.cuda, "synchronize", synchronize))
        stack.enter_context(mock.patch.object(launch, "run", run))
        stack.enter_context(_Reads(budget, device_only, phase))
        yield budget
