"""The fused path: each layer's statistics from the Triton kernels, never a probability in memory.

``choose()`` decides before a forward pass which kernel an analysis runs (``AnalysisSettings.kernel``):
- ``blocked``: the query-blocked attention of ``sinkfix.capture.attention``, probabilities handed to
  the observer block by block (every CPU run, and every case the kernels do not cover);
- ``triton``: forced; a case the kernels do not cover raises ``KernelUnsupportedError`` saying why;
- ``auto``: triton when the model is on a CUDA device and the case is covered, blocked otherwise,
  with the reason recorded when a CUDA run had to fall back.

``fused()`` is the context a fused forward runs in: the mask builder returns structured masks
(``sinkfix.capture.masks``), and the attention function hands each layer to ``_Run.attend``, which
runs pass 1 (row log-sum-exp, entropy, learned-sink mass and the layer's output, FlashAttention
style) and pass 2 (column sums over the real query rows), and gives the observer the layer's
reductions. The output the next layer reads is pass 1's (see docs/gpu.md for why not SDPA's).
A case found only inside the forward (a keyword, a mask the builder could not structure) raises
``Fallback`` under ``auto``; ``observed_forward`` then runs the batch again on the blocked path.
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from sinkfix.capture import attention, masks
from sinkfix.capture.kernels import interpreting, triton_available
from sinkfix.errors import SettingsError
from sinkfix.settings import KERNELS
# Tiles, warps and stages per (arch family, head dim, dtype) live in sinkfix.capture.kernels.configs.
MAX_HEAD_DIM = 256
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Keywords the kernels implement besides those eager attention ignores (attention.ACCEPTED_KEYWORDS).
_KERNEL_KEYWORDS = ("softcap", "s_aux", "sinks")

_default: contextvars.ContextVar[str] = contextvars.ContextVar("sinkfix_kernel", default="auto")
T = TypeVar("T")


class KernelUnsupportedError(SettingsError):
    """kernel='triton' was asked for an analysis the Triton kernels cannot run."""


class Fallback(Exception):
    """Raised inside a fused forward under ``auto``: the batch must run again on the blocked path."""


@dataclass(frozen=True)
class Choice:
    kernel: str  # "triton" or "blocked"
    reason: str | None = None  # why an automatic triton run fell back to blocked


@contextmanager
def choosing(kernel: str | None) -> Iterator[None]:
    """The kernel analyses use when their settings say ``auto`` (the CLI's --kernel)."""
    token = _default.set(kernel or "auto")
    try:
        yield
    finally:
        _default.reset(token)


def requested(kernel: str) -> str:
    return _default.get() if kernel == "auto" else kernel


def choose(kernel: str, device: torch.device, keep_maps: bool) -> Choice:
    """The kernel a forward on ``device`` runs, decided before it starts."""
    kernel = requested(kernel)
    if kernel not in KERNELS:
        raise SettingsError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "blocked" or (kernel == "auto" and device.type != "cuda"):
        return Choice("blocked")
    reason = _reason_before(device, keep_maps)
    if reason is None:
        return Choice("triton")
    if kernel == "triton":
        raise KernelUnsupportedError(f"kernel='triton' cannot run this analysis: {reason}")
    return Choice("blocked", reason)


def _reason_before(device: torch.device, keep_maps: bool) -> str | None:
    if not triton_available():
        return "triton is not installed (pip install triton, or the gpu extra)"
    if device.type != "cuda" and not interpreting():
        return f"the model is on {device}, and the Triton kernels need a CUDA device"
    if keep_maps:
        return "the L x H x T x T maps are kept (T <= map_token_limit), and only the blocked path writes them"
    hooks = attention.active_hooks()
    if hooks:
        return f"{hooks[0]} is active, and it needs the probabilities the kernels never form"
    return None


def observed_forward(choice: Choice, forced: bool, lengths: Sequence[int], make_observer: Callable[[], object],
                     forward: Callable[[object], T]) -> tuple[T, object, Choice]:
    """Run ``forward(observer)`` on the chosen path; a fused run that falls back runs again blocked.

    Under ``auto`` a fused run that fails for any other reason runs again blocked too, with the
    error as the recorded reason: the kernels are young (never compiled on a GPU while written),
    and an analysis that records why it is blocked beats one that crashes. A forced run raises.
    """
    observer = make_observer()
    if choice.kernel == "triton":
        try:
            with fused(observer, lengths, forced):
                return forward(observer), observer, choice
        except Fallback as why:
            choice, observer = Choice("blocked", str(why)), make_observer()
        except Exception as error:  # noqa: BLE001 - see the docstring; recorded, never silent
            if forced:
                raise
            first = (str(error).strip().splitlines() or [""])[0][:200]
            choice, observer = Choice("blocked", f"the fused kernels failed ({type(error).__name__}: {first})"), make_observer()
    return forward(observer), observer, choice


@contextmanager
def fused(observer: object, lengths: Sequence[int], forced: bool) -> Iterator[None]:
    run = _Run(observer, tuple(int(n) for n in lengths), forced)
    with masks.structured(run.lengths), attention.fusing(run.attend):
        yield


class _Run:
    """One fused forward: hands each layer to the kernels and its reductions to the observer.

    What every layer shares is built once per forward: the row lengths on the device, the key
    lengths of an unmasked batch, and the scratch buffers of pass 1 (lse, entropy, sink mass), which
    each layer overwrites after the previous one has been reduced (stream order on a GPU). The
    layer's output and column sums are new tensors per layer: the model and the observer keep them.
    """

    def __init__(self, observer: object, lengths: tuple[int, ...], forced: bool) -> None:
        self.observer, self.lengths, self.forced = observer, lengths, forced
        self._shared: dict[tuple, object] = {}

    def refuse(self, reason: str) -> None:
        if self.forced:
            raise KernelUnsupportedError(f"kernel='triton' cannot run this analysis: {reason}")
        raise Fallback(reason)

    def _once(self, key: tuple, make: Callable[[], T]) -> T:
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def row_lengths(self, device: torch.device) -> torch.Tensor:
        return self._once(("rows", device), lambda: torch.tensor(self.lengths, dtype=torch.int32, device=device))

    def attend(self, module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               mask: object, scaling: float | None, dropout: float,
               kwargs: dict[str, object]) -> tuple[torch.Tensor, None]:
        reason = _reason_inside(module, query, key, value, mask, dropout, kwargs, self.observer)
        if reason is not None:
            self.refuse(reason)
        from sinkfix.capture.kernels import column_sums, launch, row_stats

        problem = self.problem(query, mask, scaling, kwargs)
        stats = self.scratch(query, value, problem.sinks is not None)
        target = launch.target_of(query.device)
        launch.run(row_stats.plan(query, key, value, problem, stats, target))
        received = column_sums.empty(query, key)
        launch.run(column_sums.plan(query, key, stats.lse, problem, received, target))
        # Pass 1 leaves 0 on padding rows: a plain sum counts the real ones.
        entropy = stats.entropy.sum(dim=-1)
        sink = None if stats.sink_mass is None else stats.sink_mass.sum(dim=-1)
        self.observer.observe_layer(getattr(module, "layer_idx", None), received, entropy, sink, value)
        return stats.output, None

    def scratch(self, query: torch.Tensor, value: torch.Tensor, sinks: bool):
        """Pass 1's buffers: lse, entropy and sink mass once per forward, the output new for each layer."""
        from sinkfix.capture.kernels.row_stats import RowStats

        batch, heads, n, _ = query.shape
        lse, entropy, *mass = self._once(
            ("stats", query.device, batch, heads, n, sinks),
            lambda: [torch.empty(batch, heads, n, device=query.device, dtype=torch.float32) for _ in range(2 + sinks)])
        output = torch.empty(batch, n, heads, value.shape[3], device=query.device, dtype=value.dtype)
        return RowStats(lse, entropy, mass[0] if mass else None, output)

    def problem(self, query: torch.Tensor, mask: object, scaling: float | None, kwargs: dict[str, object]):
        from sinkfix.capture.kernels.problem import Problem

        batch, heads, n, d = query.shape
        rows = self.row_lengths(query.device)
        if isinstance(mask, masks.StructuredMask):
            left, right, keys = mask.left, mask.right, mask.lengths.to(query.device)  # built on the mask's device
        else:  # None: every key visible from every row (eager adds nothing)
            left, right = n - 1, n - 1
            keys = self._once(("all", n, query.device), lambda: torch.full_like(rows, n))
        sinks = kwargs.get("s_aux")
        if sinks is not None:
            sinks = sinks.float().reshape(1, heads, 1).expand(batch, heads, n)
        elif kwargs.get("sinks") is not None:
            sinks = kwargs["sinks"].float().reshape(kwargs["sinks"].shape[:3]).expand(batch, heads, n)
        softcap = kwargs.get("softcap")
        return Problem(scale=d ** -0.5 if scaling is None else float(scaling), left=int(left), right=int(right),
                       key_lengths=keys, row_lengths=rows, softcap=None if softcap is None else float(softcap),
                       sinks=sinks)


def _reason_inside(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: object,
                   dropout: float, kwargs: dict[str, object], observer: object) -> str | None:
    """Why the kernels cannot run this layer as eager attention would, or None."""
    if getattr(observer, "observe_layer", None) is None:
        return "the active observer takes probabilities, which the kernels never form"
    for name, value_ in kwargs.items():
        if value_ is None or name in attention.ACCEPTED_KEYWORDS or name in _KERNEL_KEYWORDS:
            continue
        if name == "normaliser" and value_ == "softmax":
            continue
        if name == "position_bias":
            return "the model adds a position bias (position_bias), which the kernels do not implement"
        return f"the attention keyword '{name}' (= {value_!r}) is not implemented by the kernels"
    if kwargs.get("s_aux") is not None and kwargs.get("sinks") is not None:
        return "the model passes both 's_aux' and 'sinks'"
    if mask is not None and not isinstance(mask, masks.StructuredMask):
        return "the attention mask is not a causal, bidirectional or sliding-window band over right-padded sequences"
    if dropout and module.training:
        return "attention dropout is active (the model is in training mode)"
    if query.shape[2] != key.shape[2]:
        return "queries and keys differ in length (a KV cache or cross-attention)"
    if query.device.type != "cuda" and not interpreting():
        return f"layer {getattr(module, 'layer_idx', '?')} is on {query.device}, and the kernels need a CUDA device"
    if query.dtype not in _DTYPES or key.dtype != query.dtype or value.dtype != query.dtype:
        return f"the {query.dtype} dtype (the kernels take float32, bfloat16 and float16)"
    if max(query.shape[-1], value.shape[-1]) > MAX_HEAD_DIM or query.shape[1] % key.shape[1]:
        return f"head dimension {query.shape[-1]} or {query.shape[1]} heads over {key.shape[1]} KV heads"
    return None
