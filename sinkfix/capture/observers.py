"""Observers: what each layer's attention is reduced to, at once, as the forward pass runs."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sinkfix.analysis import metrics


class CallRecorder:
    """Records which layer indices were observed, in call order (used to probe a freshly loaded model)."""

    def __init__(self) -> None:
        self.layers: list[int | None] = []

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        if start == 0:
            self.layers.append(layer)


@dataclass
class LayerStats:
    """What one layer leaves behind for a single sequence (batch index 0).

    Only what needs the T x T probabilities is computed here; value-side quantities are
    computed afterwards for all layers at once (``analysis._assemble``), which saves many small ops.
    """

    received: torch.Tensor  # [H, T]
    entropy: torch.Tensor  # [H]
    value: torch.Tensor  # [H_kv, T, d]
    maps: torch.Tensor | None  # [H, T, T]


# Above this many elements (H * T * T) entropy runs head by head to bound the scratch buffer.
_ONE_PASS_ENTROPY = 1 << 22


@dataclass
class SinkObserver:
    """Reduces each layer at once, so memory grows with one layer's T^2, not L * T^2.

    Full maps are kept only when ``keep_maps``.
    """

    keep_maps: bool
    layers: dict[int, LayerStats] = field(default_factory=dict)
    _scratch: torch.Tensor | None = None

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        if start != 0 or probs.shape[-2] != probs.shape[-1]:
            raise NotImplementedError("SinkObserver does not accumulate query blocks yet")
        if layer is None:
            raise RuntimeError("attention module has no layer index; load the model with sinkfix.load_model")
        p = probs[0].float()
        self.layers[layer] = LayerStats(
            received=metrics.received(p),
            entropy=metrics.row_entropy_from_scores(p, scores[0].float(), self._scratch_for(p)),
            value=value[0].float(),
            # A reference, not a copy: nothing downstream edits probs in place.
            maps=p if self.keep_maps else None,
        )

    def _scratch_for(self, p: torch.Tensor) -> torch.Tensor:
        shape = p.shape if p.numel() <= _ONE_PASS_ENTROPY else p.shape[1:]
        if self._scratch is None or self._scratch.shape != shape:
            self._scratch = torch.empty(shape, dtype=p.dtype, device=p.device)
        return self._scratch

    def stacked(self, name: str) -> torch.Tensor:
        """Stack one field over layers in layer order: [L, ...]."""
        return torch.stack([getattr(self.layers[i], name) for i in sorted(self.layers)])
