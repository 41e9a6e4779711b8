"""Which keys each press kept for one prompt, packed small enough to store with a sweep.

Per selection a [L, H_kv, T] bool mask, bit-packed, zlib-compressed and base64-encoded (a recent
window compresses to a few bytes; a random half stays ~T/8 bytes per layer and head), beside the
``detected`` sinks of the same prefill and the needle's span. ``unpack`` gives the masks back as
numpy arrays for the charts.
"""
from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from sinkfix.experiments.evict.capture import Prefill
from sinkfix.experiments.evict.compress import Kept
from sinkfix.experiments.evict.protect import detected
from sinkfix.experiments.evict.tasks.common import Prompt


def encode_mask(mask: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.packbits(mask.astype(bool), axis=None).tobytes(), 9)).decode()


def decode_mask(text: str, shape: Sequence[int]) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8))
    return bits[: int(np.prod(shape))].reshape(tuple(shape)).astype(bool)


def sinks(pre: Prefill, epsilon: float) -> torch.Tensor:
    """[L, H_kv, T] bool: the tokens ``detected`` protection would keep, per layer and KV head."""
    return torch.stack([detected(pre.alpha[layer], pre.n_kv_heads, epsilon) for layer in range(pre.n_layers)])


def pack(pre: Prefill, prompt: Prompt | None, kept: Sequence[Kept], epsilon: float) -> dict:
    shape = [pre.n_layers, pre.n_kv_heads, pre.n_tokens]
    out = {"shape": shape, "epsilon": epsilon, "sinks": encode_mask(sinks(pre, epsilon).numpy()),
           "needle": None if prompt is None or prompt.needle is None else list(prompt.needle),
           "prompt": None if prompt is None else {"length": prompt.length, "depth": prompt.depth, "seed": prompt.seed},
           "kept": {}}
    for item in kept:
        ratio = f"{item.ratio:g}"
        out["kept"].setdefault(item.press, {}).setdefault(ratio, {})[item.protect] = encode_mask(item.mask().numpy())
    return out


def unpack(example: dict, press: str, ratio: str, protect: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept [L, H_kv, T], sinks [L, H_kv, T]) bool arrays of a stored example."""
    shape = example["shape"]
    return decode_mask(example["kept"][press][ratio][protect], shape), decode_mask(example["sinks"], shape)
