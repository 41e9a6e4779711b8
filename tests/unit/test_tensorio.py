"""tensorio: safetensors bytes, optionally zlib-compressed; bit-exact and never pickle."""
from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest

from sinkfix.store import tensorio
from sinkfix.errors import StoreError


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, np.finfo(np.float32).max], dtype=np.float32)
    return {
        "f32": rng.normal(size=(3, 4, 5)).astype(np.float32),
        "special": special,
        "f16": rng.uniform(size=(2, 7, 7)).astype(np.float16),
        "i64": np.arange(-5, 5, dtype=np.int64),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "strided": rng.normal(size=(6, 6)).astype(np.float32)[::2, 1::2],  # not contiguous
    }


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_is_bit_exact(compress: bool) -> None:
    arrays = _arrays()
    restored = tensorio.loads(tensorio.dumps(arrays, compress=compress))
    assert set(restored) == set(arrays)
    for name, want in arrays.items():
        got = restored[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name


def test_plain_blob_is_a_safetensors_container() -> None:
    """An independent parse of the format: u64 header length, JSON header, raw little-endian data."""
    blob = tensorio.dumps({"x": np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)})
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    assert header["x"]["dtype"] == "F32" and header["x"]["shape"] == [2, 2]
    start, end = header["x"]["data_offsets"]
    data = blob[8 + length + start: 8 + length + end]
    assert np.frombuffer(data, dtype="<f4").tolist() == [1.0, 2.0, 3.0, 4.0]


def test_compression_shrinks_redundant_maps() -> None:
    causal = np.tril(np.full((64, 64), 1 / 64, dtype=np.float16))
    assert len(tensorio.dumps({"m": causal}, compress=True)) < len(tensorio.dumps({"m": causal})) / 10


@pytest.mark.parametrize("data", [
    b"",
    b"garbage bytes that are not a container",
    tensorio.MAGIC + b"not zlib",
    pickle.dumps({"x": np.zeros(3)}),
])
def test_damaged_or_foreign_bytes_raise_store_error(data: bytes) -> None:
    with pytest.raises(StoreError, match="damaged"):
        tensorio.loads(data)
