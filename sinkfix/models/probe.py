"""The post-load probe: which modules are attention, which inputs the model takes, and a check
that every layer's attention reaches SinkFix's function."""
from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from sinkfix.capture import attention as capture
from sinkfix.capture.observers import CallRecorder
from sinkfix.errors import UnsupportedModelError


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def attention_modules(model: nn.Module) -> list[nn.Module]:
    # Attention modules that call the attention interface all carry ``is_causal``; registration
    # order in named_modules is layer order.
    return [m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "is_causal")]


def assign_layer_indices(model: nn.Module) -> None:
    """DistilBERT's attention has no ``layer_idx``; give it one so observers know the layer."""
    modules = attention_modules(model)
    if modules and all(getattr(m, "layer_idx", None) is None for m in modules):
        for index, module in enumerate(modules):
            module.layer_idx = index


SUPPORTED = (
    "encoder-only and decoder-only transformers such as BERT, RoBERTa, DistilBERT, GPT-2, LLaMA, Qwen2 and Mistral"
)


def probe(model: nn.Module, tokenizer: object, n_layers: int, name: str) -> None:
    """One tiny forward: every layer must reach SinkFix's attention function exactly once."""
    recorder = CallRecorder()
    try:
        with torch.inference_mode(), capture.observing(recorder):
            model.base_model(**model_inputs(model, tokenizer("probe sentence", return_tensors="pt")))
    except Exception as error:  # an encoder-decoder wants decoder inputs, etc.: not a model we can analyse
        raise UnsupportedModelError(
            f"{name} ({model.config.model_type}) cannot run a plain forward pass on text: {first_line(error)}; "
            f"SinkFix supports {SUPPORTED}"
        ) from None
    if recorder.layers != list(range(n_layers)):
        raise UnsupportedModelError(
            f"{name} ({model.config.model_type}): attention is not routed through the attention interface "
            f"once per layer (saw layers {recorder.layers[:8]}); SinkFix supports {SUPPORTED}"
        )


def model_inputs(model: nn.Module, encoded: dict) -> dict:
    """Keep only the tokenizer outputs the base model accepts (DistilBERT takes no token_type_ids)."""
    return {key: value for key, value in encoded.items() if key in _accepted_inputs(type(model.base_model))}


@functools.cache
def _accepted_inputs(base_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(base_class.forward).parameters)


def is_causal(model: nn.Module) -> bool:
    return any(bool(getattr(m, "is_causal", False)) for m in attention_modules(model))
