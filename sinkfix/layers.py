"""Which of a model's layers attend, and how a layer number is checked against them.

Hybrid models (Qwen3-Next, Jamba, LFM2, ...) run softmax attention in some layers only; the
others mix tokens with linear attention, a state-space layer or a convolution. SinkFix's
per-layer arrays then hold one row per *attention* layer, and ``attention_layers`` (the model's
own layer numbers of those rows, ascending) travels with them. ``None`` means every layer
attends, so row ``l`` is layer ``l``. Layer numbers users see and type are always the model's.
"""
from __future__ import annotations

from collections.abc import Sequence

from sinkfix.errors import SettingsError


def layer_numbers(n_layers: int, attention_layers: Sequence[int] | None) -> list[int]:
    """The model layer number of each array row."""
    return list(range(n_layers)) if attention_layers is None else [int(layer) for layer in attention_layers]


def non_attention_layers(n_layers: int, attention_layers: Sequence[int] | None) -> list[int]:
    """The layers that mix tokens some other way (empty for a model that attends in every layer)."""
    attending = set(layer_numbers(n_layers, attention_layers))
    return [layer for layer in range(n_layers) if layer not in attending]


def default_layer(n_layers: int, attention_layers: Sequence[int] | None) -> int:
    """The middle attention layer: L // 2 for a model that attends in every layer."""
    numbers = layer_numbers(n_layers, attention_layers)
    return numbers[len(numbers) // 2]


def describe(n_layers: int, attention_layers: Sequence[int] | None) -> str:
    """'layers 0..11', or 'attention in layers 3, 7 of 0..7' for a hybrid."""
    if attention_layers is None:
        return f"layers 0..{n_layers - 1}"
    return f"attention in layers {_short(list(attention_layers))} of 0..{n_layers - 1}"


def row_of(layer: int, n_layers: int, attention_layers: Sequence[int] | None) -> int:
    """The array row of model layer ``layer``; a SettingsError when that layer does not attend."""
    numbers = layer_numbers(n_layers, attention_layers)
    if not 0 <= layer < n_layers:
        raise SettingsError(f"layer {layer} is out of range: this model has {describe(n_layers, attention_layers)}")
    if layer not in numbers:
        raise SettingsError(
            f"layer {layer} is not an attention layer (it mixes tokens with linear attention, a state-space "
            f"layer or a convolution): this model has {describe(n_layers, attention_layers)}"
        )
    return numbers.index(layer)


def _short(numbers: list[int], limit: int = 12) -> str:
    text = ", ".join(str(n) for n in numbers[:limit])
    return text if len(numbers) <= limit else f"{text}, ... ({len(numbers)} layers)"
