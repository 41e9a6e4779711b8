"""Devices and dtypes: what ``device="auto"`` and ``dtype="auto"`` mean here, checked before loading.

A device that is not there is a user error with a one-line message, not a CUDA traceback from
deep inside transformers. Softmax and every reduction stay float32 whatever dtype the weights
use (the attention function and the observer see to that); the dtype only sets the weights and
the matmuls.
"""
from __future__ import annotations

import torch

from sinkfix.errors import SettingsError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}


def resolve_device(device: str | None) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is available, else ``cpu``; others are checked."""
    name = (device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SettingsError(f"{name} requested but no CUDA device is available; use --device cpu or auto")
        if ":" in name:
            index = name.split(":", 1)[1]
            count = torch.cuda.device_count()
            if not index.isdigit() or int(index) >= count:
                raise SettingsError(f"{name} requested but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")
        return name
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise SettingsError("mps requested but no Apple GPU (MPS) is available; use --device cpu or auto")
        return name
    raise SettingsError(f"unknown device '{device}': use one of {', '.join(DEVICES)}")


def resolve_dtype(dtype: str | None, device: str) -> str:
    """``auto`` -> bfloat16 on CUDA, float32 elsewhere; returns the dtype's name."""
    name = (dtype or "auto").strip().lower()
    name = _ALIASES.get(name, name)
    if name == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    if name not in DTYPES:
        raise SettingsError(f"unknown dtype '{dtype}': use auto, {', '.join(DTYPES)}")
    return name


def torch_dtype(name: str) -> torch.dtype:
    return DTYPES[name]


def check_device_map(device_map: object) -> None:
    if device_map is not None and device_map != "auto" and not isinstance(device_map, dict):
        raise SettingsError(f"device_map must be None, 'auto' or a dict of module -> device, got {device_map!r}")


def split_name(hf_device_map: dict) -> str:
    """The devices a ``device_map`` load landed on, in first-use order: "cuda:0,cuda:1", "cpu,disk"."""
    seen: list[str] = []
    for where in hf_device_map.values():
        label = f"cuda:{where}" if isinstance(where, int) else str(where)
        if label not in seen:
            seen.append(label)
    return ",".join(seen) or "cpu"


def input_device(model: torch.nn.Module) -> torch.device:
    """Where a model's inputs go: its input embeddings' device (the first device of a device_map
    split). MusicGen keeps one embedding per codebook in a ModuleList: its first parameter's."""
    embeddings = model.get_input_embeddings()
    weight = getattr(embeddings, "weight", None)
    return (weight if isinstance(weight, torch.Tensor) else next(embeddings.parameters())).device
