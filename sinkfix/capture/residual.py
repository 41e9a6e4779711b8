"""The residual stream at each decoder layer's output: recorded, and optionally edited, by forward hooks.

The hooks are installed once per model and do nothing unless this thread's context asks (the same
context-variable pattern as the attention function), so threads sharing a model never see each
other's recordings or edits, and an unhooked forward costs one lookup per layer.
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

_record: contextvars.ContextVar[tuple[dict[int, object], Reducer] | None] = contextvars.ContextVar(
    "sinkfix_residual", default=None)
_edit: contextvars.ContextVar[ResidualEdit | None] = contextvars.ContextVar("sinkfix_residual_edit", default=None)
_installing = threading.Lock()
_FLAG = "_sinkfix_residual_hooks"
Reducer = Callable[[torch.Tensor], object]


def _copy(hidden: torch.Tensor) -> torch.Tensor:
    return hidden.detach().float().clone()


@dataclass(frozen=True)
class ResidualEdit:
    """Set ``h[:, token, dim] = value`` for each (token, dim) in ``features`` at one layer's output."""

    layer: int
    features: tuple[tuple[int, int], ...]
    values: tuple[float, ...]

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.features:
            return hidden
        out = hidden.clone()
        tokens = torch.tensor([t for t, _ in self.features])
        dims = torch.tensor([d for _, d in self.features])
        out[:, tokens, dims] = torch.tensor(self.values, dtype=out.dtype, device=out.device)
        return out


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: the first ModuleList in the base model as long as the model is deep
    (``layers`` in LLaMA, ``encoder.layer`` in BERT, ``h`` in GPT-2, ``transformer.layer`` in DistilBERT)."""
    n_layers = int(model.config.num_hidden_layers)
    for module in model.base_model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise RuntimeError(f"no stack of {n_layers} layers found in {type(model.base_model).__name__}")


def install(model: nn.Module) -> None:
    """Hook every decoder layer's output once per model (idempotent)."""
    with _installing:
        if getattr(model, _FLAG, False):
            return
        for index, layer in enumerate(decoder_layers(model)):
            layer.register_forward_hook(_hook(index))
        setattr(model, _FLAG, True)


def _hook(index: int):
    def hook(module: nn.Module, args: object, output: object) -> object:
        record, edit = _record.get(), _edit.get()
        if record is None and (edit is None or edit.layer != index):
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        if edit is not None and edit.layer == index:
            hidden = edit.apply(hidden)
        if record is not None:
            store, reduce = record
            store[index] = reduce(hidden)
        if edit is None or edit.layer != index:
            return None
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


@contextmanager
def recording(model: nn.Module, reduce: Reducer = _copy) -> Iterator[dict[int, object]]:
    """Within the block, forwards of ``model`` in this context fill {layer: reduce(output [B, T, D])}.

    The default keeps a float32 copy; a reducer that keeps only what is needed bounds memory on long inputs.
    """
    install(model)
    record: dict[int, object] = {}
    token = _record.set((record, reduce))
    try:
        yield record
    finally:
        _record.reset(token)


@contextmanager
def editing(model: nn.Module, edit: ResidualEdit | None) -> Iterator[None]:
    install(model)
    token = _edit.set(edit)
    try:
        yield
    finally:
        _edit.reset(token)


def stacked(record: dict[int, torch.Tensor], row: int = 0) -> torch.Tensor:
    """One sequence's recorded outputs as [L, T, D], layers in order."""
    return torch.stack([record[i][row] for i in sorted(record)])


def features_of(mask: torch.Tensor) -> tuple[tuple[int, int], ...]:
    """(token, dim) pairs where a [T, D] mask is True."""
    return tuple((int(t), int(d)) for t, d in mask.nonzero().tolist())


def values_for(features: Sequence[tuple[int, int]], by_dim: dict[int, float]) -> tuple[float, ...]:
    return tuple(float(by_dim[d]) for _, d in features)
