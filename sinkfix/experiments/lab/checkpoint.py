"""A run's training state on disk, so an interrupted run continues from its last checkpoint.

One safetensors file per run directory (``state.safetensors``) holds the model's parameters, the
optimiser's per-parameter state tensors, and in its metadata the JSON rest: the step, the
optimiser's hyper-parameters and the metrics recorded so far. It is written to a temporary name
and renamed, so a crash leaves the previous checkpoint or the new one, never half of one. No
pickle anywhere: safetensors stores raw tensors with dtype and shape.

When the run finishes, the model is also saved as an ordinary model directory (``model/``:
config.json, model.safetensors, tokenizer) that ``sinkfix.load_model`` opens.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STATE = "state.safetensors"
MODEL_DIR = "model"


def save_state(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, info: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{name}": p.detach().cpu().contiguous() for name, p in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
    meta = {"info": json.dumps(info), "param_groups": json.dumps(state["param_groups"])}
    staging = directory / f".{STATE}.{uuid.uuid4().hex}"
    save_file(tensors, str(staging), metadata=meta)
    os.replace(staging, directory / STATE)


def load_state(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict | None:
    """Restore the model and optimiser from ``directory`` and return the saved info, or None if no state."""
    path = directory / STATE
    if not path.exists():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(path))
    device = next(model.parameters()).device
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
    entries: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            # Adam's step counter stays on the CPU (as torch keeps it); moments follow the parameters.
            entries.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    optimizer.load_state_dict({"state": entries, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["info"])


def saved_info(directory: Path) -> dict | None:
    """The info of the state in ``directory`` without loading any tensor."""
    path = directory / STATE
    if not path.exists():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["info"])


def save_model(directory: Path, model: torch.nn.Module, vocab: object) -> Path:
    """The trained model as a directory ``sinkfix.load_model`` opens; replaced atomically."""
    from transformers.utils import logging as hf_logging

    target = directory / MODEL_DIR
    staging = directory / f".{MODEL_DIR}.{uuid.uuid4().hex}"
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the lab's own bar is the progress; no "Writing model shards" per run
    try:
        model.save_pretrained(staging)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    vocab.save(staging)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target
