"""The mask builder registered with SinkFix's attention function, and its structured form.

transformers 5.24 builds every layer's mask through ``ALL_MASK_ATTENTION_FUNCTIONS[impl]`` with
keywords (``batch_size, q_length, kv_length, q_offset, kv_offset, mask_function, attention_mask,
dtype, use_vmap, device, ...``). ``mask_function`` is an index function (causal, bidirectional, a
sliding window, combined with ``and_masks``) and ``attention_mask`` the 2D padding mask. The eager
builder evaluates them into a [B, 1, T, T] additive tensor: tens of GB at T = 131,072.

``sinkfix_mask`` is that eager builder, unchanged, except while the fused path runs
(``structured(lengths)``): then a mask it recognises comes back as a ``StructuredMask``, the same
information in a few integers (the band of visible keys and each sequence's length), which the
kernels read without a T x T tensor. Recognised means:
- the index function is one of transformers' own band patterns (causal, bidirectional, the causal
  or bidirectional sliding window, or an ``and_masks`` of them), checked by identity, and its band
  is read off by evaluating it on a few rows and checked on those rows;
- no offsets (no KV cache), as many queries as keys, no vmap (custom patterns);
- the padding is right padding that matches the lengths the pipeline batched.
Anything else is built by the eager builder as before, and the fused path then falls back.
``StructuredMask.materialise()`` rebuilds the eager tensor; the tests check it equals eager's.
"""
from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

_lengths: contextvars.ContextVar[tuple[int, ...] | None] = contextvars.ContextVar("sinkfix_structured", default=None)

# transformers.masking_utils' band patterns, by qualified name (module checked separately).
_BAND_LEAVES = frozenset({
    "causal_mask_function", "bidirectional_mask_function",
    "sliding_window_overlay.<locals>.inner_mask", "sliding_window_bidirectional_overlay.<locals>.inner_mask",
})
_AND = "and_masks.<locals>.and_mask"


@dataclass(frozen=True, eq=False)
class StructuredMask:
    """A [B, 1, T, T] eager mask as a band and lengths: key j is visible from query i of sequence b
    when i - left <= j <= i + right and j < lengths[b]."""

    batch: int
    n_queries: int
    n_keys: int
    left: int
    right: int
    lengths: torch.Tensor  # [B] int32 on the mask's device
    dtype: torch.dtype

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.batch, 1, self.n_queries, self.n_keys)

    @property
    def causal(self) -> bool:
        return self.right == 0

    def materialise(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows start:stop of the eager additive mask (0 visible, the dtype's minimum hidden)."""
        stop = self.n_queries if stop is None else stop
        device = self.lengths.device
        i = torch.arange(start, stop, device=device)[:, None]
        j = torch.arange(self.n_keys, device=device)[None, :]
        seen = ((j >= i - self.left) & (j <= i + self.right))[None, None] & (
            j[None, None] < self.lengths.long()[:, None, None, None])
        zero = torch.zeros((), device=device, dtype=self.dtype)
        return torch.where(seen, zero, torch.finfo(self.dtype).min)


@contextmanager
def structured(lengths: Sequence[int]) -> Iterator[None]:
    """While active, recognised masks of a batch with these real lengths come back structured."""
    token = _lengths.set(tuple(int(n) for n in lengths))
    try:
        yield
    finally:
        _lengths.reset(token)


def sinkfix_mask(*args: object, **kwargs: object) -> torch.Tensor | StructuredMask | None:
    """transformers' eager mask builder, or (fused path, recognised mask) its structured form."""
    from transformers.masking_utils import eager_mask

    lengths = _lengths.get()
    if lengths is not None and not args:
        mask = structure(lengths, **kwargs)
        if mask is not None:
            return mask
    return eager_mask(*args, **kwargs)


def structure(lengths: Sequence[int], *, batch_size: int, q_length: int, kv_length: int, q_offset: object = 0,
              kv_offset: object = 0, mask_function: Callable | None = None,
              attention_mask: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
              use_vmap: bool = False, device: torch.device | str = "cpu", **_: object) -> StructuredMask | None:
    """The structured form of the mask these builder keywords describe, or None if it is not one."""
    plain = isinstance(q_offset, int) and isinstance(kv_offset, int) and q_offset == 0 and kv_offset == 0
    if not plain or use_vmap or q_length != kv_length or batch_size != len(lengths) or mask_function is None:
        return None
    if max(lengths) > kv_length:
        return None
    band = band_of(mask_function, q_length)
    if band is None or not _right_padded(attention_mask, lengths, kv_length):
        return None
    counts = torch.tensor(lengths, dtype=torch.int32, device=device)
    return StructuredMask(batch_size, q_length, kv_length, band[0], band[1], counts, dtype)


def band_of(mask_function: Callable, n: int) -> tuple[int, int] | None:
    """(left, right) of a recognised band pattern over n positions, read off and checked on a few rows."""
    if not _is_band(mask_function):
        return None
    rows = torch.tensor(sorted({0, 1, n // 3, n // 2, n - 2, n - 1} & set(range(n))))
    keys = torch.arange(n)
    zero = torch.zeros((), dtype=torch.long)
    seen = torch.broadcast_to(mask_function(zero, zero, rows[:, None], keys[None, :]), (len(rows), n)).bool()
    if not bool(seen[-1].any()) or not bool(seen[0].any()):
        return None
    left = n - 1 - int(seen[-1].nonzero()[0])
    right = int(seen[0].nonzero()[-1])
    expected = (keys[None, :] >= rows[:, None] - left) & (keys[None, :] <= rows[:, None] + right)
    return (left, right) if torch.equal(seen, expected) else None


def _is_band(fn: Callable) -> bool:
    if getattr(fn, "__module__", None) != "transformers.masking_utils":
        return False
    name = getattr(fn, "__qualname__", "")
    if name in _BAND_LEAVES:
        return True
    if name != _AND:
        return False
    parts = inspect.getclosurevars(fn).nonlocals.get("mask_functions", ())
    return bool(parts) and all(_is_band(part) for part in parts)


def _right_padded(padding: torch.Tensor | None, lengths: Sequence[int], n_keys: int) -> bool:
    """True when the 2D padding mask is exactly ``j < lengths[b]`` (one host sync per mask built)."""
    if padding is None:
        return all(n == n_keys for n in lengths)
    if padding.dim() != 2 or padding.shape[0] != len(lengths) or padding.shape[1] > n_keys:
        return False
    keys = torch.arange(padding.shape[1], device=padding.device)
    expected = keys[None, :] < torch.tensor(lengths, device=padding.device)[:, None]
    missing = [n for n in lengths if n > padding.shape[1]]  # keys past the 2D mask's width are padding
    return not missing and torch.equal(padding.bool(), expected)
