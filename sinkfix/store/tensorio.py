"""Arrays to bytes and back: a safetensors container, optionally zlib-compressed. Never pickle.

safetensors carries each array's dtype and shape in a JSON header followed by the raw numeric
bytes, so decoding can never execute code. Compressed blobs are ``MAGIC + zlib(safetensors)``;
the magic cannot start a plain container, whose first 8 bytes are a little-endian header length.
"""
from __future__ import annotations

import zlib

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from sinkfix.errors import StoreError

MAGIC = b"SFXZLIB1"
# Level 1 is 3-5x faster than the default and only a few percent larger on attention maps.
DEFAULT_LEVEL = 1


def dumps(arrays: dict[str, np.ndarray], compress: bool = False, level: int = DEFAULT_LEVEL) -> bytes:
    """Encode named arrays. ``compress`` wraps the container in zlib (lossless)."""
    raw = _st_save({name: _contiguous(array) for name, array in arrays.items()})
    return MAGIC + zlib.compress(raw, level) if compress else raw


def _contiguous(array: np.ndarray) -> np.ndarray:
    # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
    array = np.asarray(array)
    return array if array.flags.c_contiguous else array.copy(order="C")


def loads(data: bytes) -> dict[str, np.ndarray]:
    """Decode what ``dumps`` wrote; raises StoreError on bytes that are not such a blob."""
    try:
        if data[: len(MAGIC)] == MAGIC:
            data = zlib.decompress(data[len(MAGIC):])
        return dict(_st_load(bytes(data)))
    except (zlib.error, SafetensorError, ValueError) as error:
        raise StoreError(f"a stored tensor blob is damaged and cannot be read ({error})") from None
