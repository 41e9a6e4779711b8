"""Devices and dtypes on the CPU: bfloat16 weights, device_map splits, the shelf's keys, clear errors.

The GPU side of the same code paths is ``make gpu-check`` (benchmarks/gpu_check.py).
"""
import numpy as np
import pytest
import torch

import sinkfix
from sinkfix.cache import cache_key
from sinkfix.cli.main import main
from sinkfix.models import devices, loading
from sinkfix.models.shelf import ModelShelf

SENTENCE = "Attention sinks soak up attention without contributing much to the output."


@pytest.fixture(scope="module")
def minilm_bf16():
    return sinkfix.load_model("minilm", dtype="bfloat16")


def test_minilm_bfloat16_agrees_with_float32(minilm, minilm_bf16):
    assert minilm_bf16.dtype_name == "bfloat16" and minilm_bf16.device_name == "cpu"
    assert next(minilm_bf16.model.parameters()).dtype == torch.bfloat16
    half = sinkfix.analyze(SENTENCE, minilm_bf16)
    full = sinkfix.analyze(SENTENCE, minilm)
    assert half.dtype == "bfloat16" and full.dtype == "float32" and half.device == "cpu"
    assert half.att_received.dtype == np.float32  # reductions are float32 whatever the weights
    np.testing.assert_allclose(half.att_received, full.att_received, rtol=0, atol=2e-2)
    np.testing.assert_allclose(half.att_received_head, full.att_received_head, rtol=0, atol=5e-2)
    np.testing.assert_allclose(half.att_received_head.sum(-1), 1.0, atol=1e-3)
    assert half.fingerprint != full.fingerprint  # dtype is part of the weights' identity
    assert cache_key(SENTENCE, minilm_bf16) != cache_key(SENTENCE, minilm)


def test_bfloat16_blocked_equals_unblocked(minilm_bf16):
    default = sinkfix.analyze(SENTENCE, minilm_bf16)
    blocked = sinkfix.analyze(SENTENCE, minilm_bf16, sinkfix.AnalysisSettings(query_block=3))
    np.testing.assert_allclose(blocked.att_received_head, default.att_received_head, rtol=0, atol=1e-5)
    np.testing.assert_allclose(blocked.entropy, default.entropy, rtol=0, atol=1e-4)


def test_device_map_with_a_cpu_and_disk_split(tiny_model_dirs):
    """The only split a CPU-only machine has: accelerate keeps what fits in max_memory on the CPU
    and offloads the rest to disk, with hooks that load each layer for its forward."""
    path = str(tiny_model_dirs["llama"])
    plain = sinkfix.load_model(path)
    split = sinkfix.load_model(path, device_map="auto", max_memory={"cpu": 60_000})
    assert split.device_name == "cpu,disk"
    assert set(split.model.hf_device_map.values()) == {"cpu", "disk"}
    assert split.fingerprint == plain.fingerprint
    text = "the cat sat on the mat . hello world"
    a, b = sinkfix.analyze(text, split), sinkfix.analyze(text, plain)
    assert a.device == "cpu,disk"
    for name in ("att_received_head", "entropy", "value_norm_head", "contribution", "maps"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-5, err_msg=name)


def test_unavailable_devices_are_plain_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(sinkfix.SettingsError, match="cuda requested but no CUDA device is available"):
        sinkfix.load_model("minilm", device="cuda")
    with pytest.raises(sinkfix.SettingsError, match="cuda:1 requested but no CUDA device"):
        sinkfix.load_model("minilm", device="cuda:1")
    with pytest.raises(sinkfix.SettingsError, match="unknown dtype"):
        sinkfix.load_model("minilm", dtype="int8")
    with pytest.raises(sinkfix.SettingsError, match="unknown device"):
        sinkfix.load_model("minilm", device="tpu")
    assert devices.resolve_device("auto") == "cpu" and devices.resolve_dtype("auto", "cpu") == "float32"
    assert devices.resolve_dtype("auto", "cuda:1") == "bfloat16"


def test_cli_device_error_is_one_line(monkeypatch, capsys, db_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["analyze", "hello", "--device", "cuda", "--no-save"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "sinkfix: error: cuda requested but no CUDA device is available; use --device cpu or auto"


def test_shelf_keys_by_name_device_and_dtype(monkeypatch):
    calls = []

    def fake_load(name, progress=None, device="auto", dtype="auto"):
        calls.append((name, device, dtype))
        return object()

    monkeypatch.setattr(loading, "load_model", fake_load)
    shelf = ModelShelf()
    first = shelf.get("m")
    assert shelf.get("m", device="cpu", dtype="float32") is first  # auto means cpu/float32 here
    half = shelf.get("m", dtype="bfloat16")
    assert half is not first and shelf.get("m", dtype="bf16") is half
    assert calls == [("m", "auto", "auto"), ("m", "cpu", "bfloat16")]
    assert shelf.loaded() == ["m", "m"]
