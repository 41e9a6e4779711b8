"""Observers: what each layer's attention is reduced to, block by block, as the forward pass runs.

The attention function hands an observer one block of query rows at a time (``start`` says
where the block begins). ``SinkObserver`` adds each block into per-layer sums, so the full
T x T probabilities never need to exist at once, and it is batch-aware: with right-padded
sequences of different lengths, padding rows give nothing to any sum (padding columns already
receive exactly 0 from the mask). Every reduction runs in float32 whatever the model's dtype,
and each finished layer's reductions move to the CPU, so layers that live on different devices
(``device_map``) combine without device mismatches.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from sinkfix.analysis import metrics


def add_columns(total: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """Add a block's per-key sums [..., k] into a layer's running sums [..., T], k <= T, in place.

    A causal block's probabilities cover only the keys its rows can see (the attention function
    skips the rest), so keys k.. receive nothing from it.
    """
    total[..., :block.shape[-1]] += block
    return total


class CallRecorder:
    """Records which layer indices were observed, in call order (used to probe a freshly loaded model)."""

    def __init__(self) -> None:
        self.layers: list[int | None] = []

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        if start == 0:
            self.layers.append(layer)


@dataclass(frozen=True)
class SequenceStats:
    """What one sequence of the batch leaves behind, sliced to its n real tokens (float32, CPU)."""

    received: torch.Tensor  # [L, H, n] attention each key receives, mean over the real queries
    entropy: torch.Tensor  # [L, H] mean row entropy over the real queries, nats
    value_norm_head: torch.Tensor  # [L, H_kv, n] raw per-head value norms
    projected: torch.Tensor | None  # [L, H, n] ||W_O^h v_j|| (None without an output-projection adapter)
    maps: torch.Tensor | None  # [L, H, n, n] only when the observer keeps maps
    learned_sink_mass: torch.Tensor | None  # [L, H] mean over the real queries (learned-sink models only)


@dataclass
class _Layer:
    """One layer's running sums over the batch; on the layer's device until its last block."""

    received: torch.Tensor  # [B, H, T] sum over real query rows
    entropy: torch.Tensor  # [B, H] sum of row entropies over real query rows
    value_norm_head: torch.Tensor  # [B, H_kv, T]
    projected: torch.Tensor | None  # [B, H, T]
    maps: torch.Tensor | None  # [B, H, T, T], always on the CPU
    sink: torch.Tensor | None = None  # [B, H] sum of learned-sink mass over real query rows
    rows: int = 0  # query rows seen so far

    def to_cpu(self) -> _Layer:
        # non_blocking: a CUDA layer's sums go to pinned memory without a host sync per layer;
        # SinkObserver.settle() waits once, after the forward. A CPU tensor is returned as is.
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to("cpu", non_blocking=True)

        return _Layer(move(self.received), move(self.entropy), move(self.value_norm_head), move(self.projected),
                      self.maps, move(self.sink), self.rows)


class SinkObserver:
    """Reduces each layer block by block into per-sequence sums.

    ``lengths`` gives each sequence's real tokens (right padding); None means every sequence is
    as long as the batch. ``output_grams`` (per layer [H, d, d]) lets the value side be reduced
    as the values arrive, so no layer's value vectors are kept. ``on_layer(n_done)`` is called
    each time a layer's last block has been seen (progress reporting).
    """

    def __init__(self, keep_maps: bool, lengths: Sequence[int] | None = None,
                 output_grams: Sequence[torch.Tensor] | None = None,
                 on_layer: Callable[[int], None] | None = None) -> None:
        self.keep_maps = keep_maps
        self.lengths = None if lengths is None else torch.as_tensor(list(lengths), dtype=torch.long)
        self._sizes = None if lengths is None else tuple(int(n) for n in lengths)  # the same, as Python ints
        self.output_grams = output_grams
        self.on_layer = on_layer
        self.layers: dict[int, _Layer] = {}  # finished layers, on the CPU
        self._open: dict[int, _Layer] = {}
        self._pending: set[torch.device] = set()  # CUDA devices with copies to the CPU in flight
        self._stacked: dict[str, torch.Tensor | None] | None = None  # the layers' sums stacked, once finished

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        if layer is None:
            raise RuntimeError("attention module has no layer index; load the model with sinkfix.load_model")
        if start == 0:
            self._open[layer] = self._start_layer(layer, probs, value)
        state = self._open.get(layer)
        if state is None or start != state.rows:
            raise RuntimeError(f"query blocks of layer {layer} arrived out of order (block at row {start})")
        rows, seen, keys = probs.shape[-2], probs.shape[-1], value.shape[-2]  # seen <= keys: see add_columns
        weights = self._row_weights(start, rows, keys, probs.device)  # [B, q] or None: every row is real
        p, s = probs.float(), scores.float()  # no copy for float32 models
        if weights is None:
            add_columns(state.received, p.sum(dim=-2))
        else:
            add_columns(state.received, torch.matmul(weights[:, None, None, :], p).squeeze(-2))
        mass = None if sink_mass is None else sink_mass.float()
        per_row = metrics.row_entropies(p, s, mass)  # [B, H, q]
        state.entropy += _weighted_row_sum(per_row, weights)
        if mass is not None:
            added = _weighted_row_sum(mass, weights)
            state.sink = added if state.sink is None else state.sink + added
        if state.maps is not None:
            state.maps[:, :, start:start + rows, :seen] = p.cpu()
        state.rows += rows
        if state.rows >= keys:  # the layer's last block: move it to the CPU and free the device copy
            self._close(layer, self._open.pop(layer))

    def observe_layer(self, layer: int | None, received: torch.Tensor, entropy: torch.Tensor,
                      sink_mass: torch.Tensor | None, value: torch.Tensor) -> None:
        """A whole layer reduced by the fused kernels (sinkfix.capture.fast_path): ``received`` [B, H, T]
        and ``entropy``/``sink_mass`` [B, H] are already sums over each sequence's real query rows."""
        if layer is None:
            raise RuntimeError("attention module has no layer index; load the model with sinkfix.load_model")
        self._check_batch(received.shape[0], value.shape[-2])
        norms, projected = self._value_side(layer, value, received.device)
        self._close(layer, _Layer(received, entropy, norms, projected, None, sink_mass, rows=value.shape[-2]))

    def _close(self, layer: int, state: _Layer) -> None:
        if state.received.device.type == "cuda":
            self._pending.add(state.received.device)
        self.layers[layer] = state.to_cpu()
        self._stacked = None
        if self.on_layer is not None:
            self.on_layer(len(self.layers))

    def settle(self, device: torch.device | None = None) -> None:
        """Wait for the layers' copies to the CPU, and for ``device``'s work if it is a CUDA device: one
        sync per device per forward, not one per layer."""
        if device is not None and device.type == "cuda":
            self._pending.add(device)
        for pending in self._pending:
            torch.cuda.synchronize(pending)
        self._pending.clear()

    def _start_layer(self, layer: int, probs: torch.Tensor, value: torch.Tensor) -> _Layer:
        batch, heads, keys = probs.shape[0], probs.shape[1], value.shape[-2]
        self._check_batch(batch, keys)
        device = probs.device
        norms, projected = self._value_side(layer, value, device)
        zeros = dict(dtype=torch.float32, device=device)
        return _Layer(
            received=torch.zeros(batch, heads, keys, **zeros),
            entropy=torch.zeros(batch, heads, **zeros),
            value_norm_head=norms,
            projected=projected,
            maps=torch.zeros(batch, heads, keys, keys, dtype=torch.float32) if self.keep_maps else None,
        )

    def _check_batch(self, batch: int, keys: int) -> None:
        """The forward's batch matches the lengths (checked with Python integers: no tensor read per layer)."""
        if self._sizes is None:
            self.lengths = torch.full((batch,), keys, dtype=torch.long)
            self._sizes = (keys,) * batch
        if len(self._sizes) != batch or max(self._sizes) > keys:
            raise RuntimeError(f"observer expects {len(self._sizes)} sequences of at most {keys} tokens, "
                               f"the forward has {batch} x {keys}")

    def _value_side(self, layer: int, value: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-head value norms [B, H_kv, T] read from V in place (float32 sums, no float32 copy of V), and
        the projected norms [B, H, T], whose float32 products do need V in float32 (a copy unless it is)."""
        norms = torch.linalg.vector_norm(value, dim=-1, dtype=torch.float32)
        if self.output_grams is None:
            return norms, None
        grams = self.output_grams[layer].to(device=device, dtype=torch.float32)
        return norms, metrics.projected_norms(value.float(), grams)

    def _row_weights(self, start: int, rows: int, keys: int, device: torch.device) -> torch.Tensor | None:
        if min(self._sizes) >= start + rows:
            return None
        index = torch.arange(start, start + rows)
        return (index[None, :] < self.lengths[:, None]).to(device=device, dtype=torch.float32)

    def sequence(self, index: int) -> SequenceStats:
        """Sequence ``index``'s reductions over every observed layer, sliced to its real tokens."""
        if self._open:
            raise RuntimeError(f"layers {sorted(self._open)} were not observed to the end")
        self.settle()
        n = self._sizes[index]
        layers = [self.layers[i] for i in sorted(self.layers)]
        if self._stacked is None:  # once per batch, not once per text: [L, B, ...] per reduction
            self._stacked = {name: _stack(layers, name) for name in _SUMS}

        def pick(name: str) -> torch.Tensor | None:
            whole = self._stacked[name]
            return None if whole is None else whole[:, index].contiguous()  # the layout a per-text stack had

        received, entropy, sink = pick("received"), pick("entropy"), pick("sink")
        norms, projected = pick("value_norm_head"), pick("projected")
        maps = None if layers[0].maps is None else torch.stack([layer.maps[index] for layer in layers])
        return SequenceStats(
            received=received[..., :n] / n,
            entropy=entropy / n,
            value_norm_head=norms[..., :n],
            projected=None if projected is None else projected[..., :n],
            maps=None if maps is None else maps[..., :n, :n],
            learned_sink_mass=None if sink is None else sink / n,
        )


_SUMS = ("received", "entropy", "sink", "value_norm_head", "projected")


def _stack(layers: list[_Layer], name: str) -> torch.Tensor | None:
    parts = [getattr(layer, name) for layer in layers]
    return None if parts[0] is None else torch.stack(parts)


def _weighted_row_sum(per_row: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Sum [B, H, q] over the real rows -> [B, H]."""
    # where(), not a product: a padding row's value must not reach the sum even if it is not finite.
    return per_row.sum(dim=-1) if weights is None else torch.where(weights[:, None, :] > 0, per_row, 0.0).sum(dim=-1)
