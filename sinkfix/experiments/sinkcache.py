"""The pieces of window attention with sinks: the visibility rule, a rolling KV cache, RoPE re-rotation.

One rule serves every mode: query i sees key j when j <= i and (i - j < window or j < sinks). The
masked mode applies it as an additive mask through SinkFix's attention function; the streaming mode
applies it by evicting cache entries (and, within a multi-token step, by the same mask).

``SinkCache`` is transformers' ``DynamicCache`` plus one operation, ``keep(start, recent)``, which
drops every entry but the first ``start`` and the last ``recent`` in all layers. It also records
which token of the text each slot holds, so masks and tests can be built from absolute indices.
With ``pos_shift`` the cached keys of a RoPE model are re-rotated after an eviction so the slots
hold consecutive positions 0..n-1 (StreamingLLM's position re-assignment): RoPE rotations compose,
R(p) R(d) = R(p + d), so rotating a key computed at position p by d equals computing it at p + d.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

from sinkfix.errors import SettingsError

# Architectures whose RoPE uses the rotate-half layout (transformers' apply_rotary_pos_emb).
ROTATE_HALF_ROPE = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen3", "olmo", "olmo2", "granite",
                              "phi3", "gemma", "gemma2", "starcoder2", "smollm3"})
# RoPE variants whose frequencies do not depend on the sequence length, so a rotation by d is fixed.
STATIC_ROPE = frozenset({"default", "linear", "llama3", "yarn"})


def visible(query_pos: torch.Tensor, key_pos: torch.Tensor, window: int, sinks: int) -> torch.Tensor:
    """[Tq, Tk] bool: which keys each query sees under window attention with ``sinks`` first tokens."""
    q, k = query_pos[:, None], key_pos[None, :]
    return (k <= q) & ((q - k < window) | (k < sinks))


def additive(mask: torch.Tensor) -> torch.Tensor:
    """0 where visible, the float32 minimum where hidden (as transformers' eager masks do)."""
    return torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, torch.finfo(torch.float32).min)


class WindowMask:
    """The additive [Tq, Tk] window-with-sinks mask, built one block of query rows at a time.

    ``capture.attention.masking`` slices its mask per query block (``mask[start:stop, :n_keys]``);
    this object answers those slices without ever holding the full T x T mask, so memory stays
    linear in T (a float32 mask at T = 8192 would be 256 MiB).
    """

    def __init__(self, n_tokens: int, window: int, sinks: int) -> None:
        self.n_tokens, self.window, self.sinks = n_tokens, window, sinks
        self.shape = (n_tokens, n_tokens)

    def __getitem__(self, index: tuple[slice, slice]) -> torch.Tensor:
        rows, cols = index
        queries = torch.arange(self.n_tokens)[rows]
        keys = torch.arange(self.n_tokens)[cols]
        return additive(visible(queries, keys, self.window, self.sinks))

    def full(self) -> torch.Tensor:
        return self[:, :]


class RopeShift:
    """Rotate RoPE keys by a position offset, with the model's own frequencies."""

    def __init__(self, inv_freq: torch.Tensor) -> None:
        self.inv_freq = inv_freq.detach().double().cpu()

    @classmethod
    def for_model(cls, model: torch.nn.Module, model_type: str) -> RopeShift:
        rotary = getattr(getattr(model, "base_model", model), "rotary_emb", None)
        if model_type not in ROTATE_HALF_ROPE or rotary is None or not hasattr(rotary, "inv_freq"):
            raise SettingsError(f"pos_shift re-assigns RoPE positions; {model_type} has no rotate-half RoPE "
                                f"(supported: {', '.join(sorted(ROTATE_HALF_ROPE))}). Use pos_shift off.")
        kind = getattr(rotary, "rope_type", "default")
        if kind not in STATIC_ROPE:
            raise SettingsError(f"pos_shift needs fixed RoPE frequencies; {model_type} uses {kind!r} RoPE")
        return cls(rotary.inv_freq)

    def rotate(self, keys: torch.Tensor, delta: int) -> torch.Tensor:
        """``keys`` [..., T, d] computed at positions p, returned as if computed at p + delta."""
        angles = float(delta) * self.inv_freq  # float64: the angle is exact before rounding once
        emb = torch.cat([angles, angles])
        cos, sin = emb.cos().to(keys), emb.sin().to(keys)
        half = keys.shape[-1] // 2
        rotated = torch.cat([-keys[..., half:], keys[..., :half]], dim=-1)
        return keys * cos + rotated * sin


class SinkCache(DynamicCache):
    """A DynamicCache that can evict its middle: the first ``start`` and last ``recent`` entries stay."""

    def __init__(self, config: object, shift: RopeShift | None = None) -> None:
        super().__init__(config=config)
        if any(self.is_sliding):
            raise SettingsError("streaming needs full-attention layers; this model has sliding-window layers")
        recurrent = [i for i, layer in enumerate(self.layers) if type(layer).__name__ == "LinearAttentionLayer"]
        if recurrent:  # a hybrid (Qwen3-Next, Jamba, LFM2, ...): its other layers keep a state, not keys
            raise SettingsError(
                f"streaming evicts the middle of the KV cache, but layers {recurrent[:8]} of this hybrid model keep a "
                f"recurrent state (linear attention, state space or convolution) that holds every past token, so "
                f"StreamingLLM does not apply to it"
            )
        self.shift = shift
        self.positions = torch.empty(0, dtype=torch.long)  # which token of the text each slot holds

    def record(self, positions: torch.Tensor) -> None:
        """Note the text indices of the tokens a forward just appended."""
        self.positions = torch.cat([self.positions, positions.to(torch.long)])

    def keep(self, start: int, recent: int) -> int:
        """Evict all but the first ``start`` and the last ``recent`` slots; return how many went."""
        n = len(self.positions)
        if n <= start + recent:
            return 0
        index = torch.cat([torch.arange(start), torch.arange(n - recent, n)])
        evicted = n - len(index)
        for layer in self.layers:
            if not layer.is_initialized or layer.keys.numel() == 0:
                continue
            keys = layer.keys.index_select(-2, index.to(layer.keys.device))
            if self.shift is not None and recent:
                # The recent slots move down by ``evicted`` positions; the sinks keep theirs.
                keys = torch.cat([keys[..., :start, :], self.shift.rotate(keys[..., start:, :], -evicted)], dim=-2)
            layer.keys = keys
            layer.values = layer.values.index_select(-2, index.to(layer.values.device))
        self.positions = self.positions[index]
        return evicted
