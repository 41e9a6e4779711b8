"""The post-load probe: which modules are attention, which inputs the model takes, a check that
every layer's attention reaches SinkFix's function, and a check that it computes what the
model's own eager attention computes (conformance by construction: a model that would be
analysed silently wrong is refused at load time)."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
from torch import nn

from sinkfix.capture import attention as capture
from sinkfix.errors import UnsupportedModelError


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def attention_modules(model: nn.Module) -> list[nn.Module]:
    # Attention modules that call the attention interface all carry ``is_causal``; registration
    # order in named_modules is layer order.
    return [m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "is_causal")]


def assign_layer_indices(model: nn.Module) -> None:
    """DistilBERT's and LayoutLM's attention have no ``layer_idx``; give them one so observers know
    the layer. The modules numbered are those whose forward asks the attention interface for its
    function, in registration (layer) order."""
    modules = [m for m in model.modules() if _calls_interface(type(m))]
    if modules and all(getattr(m, "layer_idx", None) is None for m in modules):
        for index, module in enumerate(modules):
            module.layer_idx = index


@functools.cache
def _calls_interface(module_class: type) -> bool:
    try:
        return "ALL_ATTENTION_FUNCTIONS" in inspect.getsource(module_class.forward)
    except (OSError, TypeError):
        return False


SUPPORTED = (
    "encoder-only and decoder-only transformers whose attention goes through transformers' attention "
    "interface, such as BERT, RoBERTa, DistilBERT, GPT-2, LLaMA, Mistral, Qwen2/3, Gemma 1-3, Phi-3, OLMo-2 "
    "and gpt-oss, and hybrids such as Qwen3-Next, Jamba and LFM2 on their attention layers "
    "(see docs/architectures.md)"
)
# Long enough (about 16 tokens) that compressed-KV layers show it, short enough to cost little.
PROBE_TEXT = "the probe sentence checks that every layer of this model attends to every token of a short text"
# Largest difference allowed between SinkFix's forward and eager's, relative to the output's
# scale. In float32 SinkFix computes eager's ops, so differences are rounding at most; bfloat16
# and float16 carry 8 and 11 mantissa bits, and some families take the softmax in that dtype.
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-9, torch.bfloat16: 5e-2, torch.float16: 1e-2}


def bypass_message(name: str, model_type: str) -> str:
    return (f"{name} ({model_type}) mixes tokens in its own code (its own attention, or a state-space layer) "
            f"instead of through transformers' attention interface, so SinkFix cannot see its attention; "
            f"SinkFix supports {SUPPORTED}")


def check_interface(model_class: type, config: object, name: str) -> None:
    """Before loading: refuse classes that do not route attention through the interface (Falcon,
    Mamba, ...), which would otherwise fail with an obscure ``'sinkfix'`` lookup error."""
    model_type = getattr(config, "model_type", "?")
    if not isinstance(getattr(config, "num_hidden_layers", None), int):
        raise UnsupportedModelError(
            f"{name} ({model_type}) is a composite model (vision, audio or encoder-decoder parts around a "
            f"text model) with no single layer count; SinkFix supports {SUPPORTED}"
        )
    try:
        concrete = model_class._model_mapping[type(config)] if hasattr(model_class, "_model_mapping") else model_class
    except KeyError:
        return  # from_pretrained reports it
    # transformers' own test: a module with an ``*Attention(nn.Module)`` class that never asks the
    # attention interface for its function computes attention by itself.
    can_set = getattr(concrete, "_can_set_attn_implementation", None)
    if can_set is not None and not can_set():
        raise UnsupportedModelError(bypass_message(name, model_type))


@dataclass(frozen=True)
class Probed:
    """What the probe saw: a hybrid's attention layers (None: every layer attends) and the heads and
    key-value heads every attention layer has (from the tensors, not the config: a decoder-only
    wrapper's config may count its encoder's heads)."""

    attention_layers: list[int] | None
    n_heads: int
    n_kv_heads: int


def probe(model: nn.Module, tokenizer: object, n_layers: int, name: str) -> Probed:
    """One short forward through SinkFix's function and one through the model's own eager attention.

    Every attention layer must reach SinkFix's function exactly once, every keyword must be one
    SinkFix implements or one eager ignores, and the two outputs must agree within the dtype's
    tolerance. Returns the attention layers of a hybrid model (see ``attention_layers``) and the
    head counts.
    """
    model_type = model.config.model_type
    # No KV cache, as in an analysis (some families' cached path cannot run on a plain forward).
    inputs = model_inputs(model, {**tokenizer(PROBE_TEXT, return_tensors="pt"), "use_cache": False})
    recorder = _Recorder()
    try:
        with torch.inference_mode(), capture.observing(recorder):
            ours = _first_output(model.base_model(**inputs))
    except capture.UnsupportedKeywordError as error:
        raise UnsupportedModelError(f"{name} ({model_type}) cannot be analysed: {error}") from None
    except Exception as error:  # an encoder-decoder wants decoder inputs, etc.: not a model we can analyse
        raise UnsupportedModelError(
            f"{name} ({model_type}) cannot run a plain forward pass on text: {first_line(error)}; "
            f"SinkFix supports {SUPPORTED}"
        ) from None
    if not recorder.layers:
        raise UnsupportedModelError(bypass_message(name, model_type))
    attending = attention_layers(model.config, recorder.layers, n_layers, name)
    n_tokens = int(inputs["input_ids"].shape[-1]) if "input_ids" in inputs else None
    shapes = sorted(set(recorder.shapes))
    if len({shape[:2] for shape in shapes}) > 1 or (n_tokens is not None and any(s[2] != n_tokens for s in shapes)):
        raise UnsupportedModelError(
            f"{name} ({model_type}): its layers attend with (heads, key-value heads, keys) {shapes} for {n_tokens} tokens; SinkFix's "
            f"per-token, per-head results need the same heads and key-value heads in every layer and one key per token "
            f"(no compressed or extra keys); SinkFix supports {SUPPORTED}"
        )
    try:
        reference = eager_output(model, inputs)
    except Exception as error:  # nothing to compare with: refuse rather than analyse unchecked
        raise UnsupportedModelError(
            f"{name} ({model_type}): the model's own eager attention fails on a plain forward pass "
            f"({first_line(error)}), so SinkFix cannot check its capture; SinkFix supports {SUPPORTED}"
        ) from None
    difference = relative_difference(ours, reference)
    tolerance = TOLERANCE.get(ours.dtype, 1e-2)
    if not difference <= tolerance:  # also catches NaN
        raise UnsupportedModelError(
            f"{name} ({model_type}): SinkFix's attention does not reproduce this model's own eager attention "
            f"(outputs differ by {difference:.2g} of their scale, tolerance {tolerance:g}), so it is refused "
            f"rather than analysed wrongly; SinkFix supports {SUPPORTED}"
        )
    heads, kv_heads = shapes[0][:2]
    return Probed(attending, heads, kv_heads)


def attention_layers(config: object, seen: list[int | None], n_layers: int, name: str) -> list[int] | None:
    """Which layers attend, from the layers that reached SinkFix's function (in call order).

    None when every layer did, once and in order. A hybrid model (attention in some layers, linear
    attention, a state-space layer or a convolution in the others) is accepted when its config
    declares each layer's kind (``layer_types``) and the layers that arrived are exactly those of
    the kinds that arrived: a layer of an attending kind that did not arrive computes attention
    in its own code, and that model is refused.
    """
    model_type = getattr(config, "model_type", "?")
    if seen == list(range(n_layers)):
        return None
    kinds = getattr(config, "layer_types", None)
    once = all(isinstance(layer, int) for layer in seen) and seen == sorted(set(seen))
    if not once or not isinstance(kinds, (list, tuple)) or len(kinds) != n_layers or seen[-1] >= n_layers:
        raise UnsupportedModelError(
            f"{name} ({model_type}): attention is not routed through the attention interface "
            f"once per layer (saw layers {seen[:8]}); SinkFix supports {SUPPORTED}"
        )
    attending_kinds = {kinds[layer] for layer in seen}
    bypassing = [layer for layer in range(n_layers) if layer not in seen and kinds[layer] in attending_kinds]
    if bypassing:
        raise UnsupportedModelError(
            f"{name} ({model_type}): attention reached the attention interface from layers {seen[:8]} but not from "
            f"layers {bypassing[:8]} of the same kind, so some of its attention is computed in its own code (or its "
            f"attention modules are numbered unlike its layers) and SinkFix cannot place it; SinkFix supports {SUPPORTED}"
        )
    return list(seen)


class _Recorder:
    """Which layers reach SinkFix's function, in call order, and with how many heads and keys."""

    def __init__(self) -> None:
        self.layers: list[int | None] = []
        self.shapes: list[tuple[int, int, int]] = []

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        if start == 0:
            self.layers.append(layer)
            self.shapes.append((int(probs.shape[1]), int(value.shape[1]), int(value.shape[-2])))


def eager_output(model: nn.Module, inputs: dict) -> torch.Tensor:
    """The base model's first output with transformers' own eager attention on the same weights."""
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            return _first_output(model.base_model(**inputs))
    finally:
        model.set_attn_implementation(capture.ATTN_NAME)


def relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| over max(1, max |reference|), in float32."""
    a, b = ours.float(), reference.float()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1.0))


def _first_output(outputs: object) -> torch.Tensor:
    return outputs[0] if isinstance(outputs, tuple) else next(iter(outputs.values()))


def model_inputs(model: nn.Module, encoded: dict) -> dict:
    """Keep only the tokenizer outputs the base model accepts (DistilBERT takes no token_type_ids)."""
    base = model.base_model
    if _accepted_inputs(type(base)) <= {"self", "args", "kwargs"} and isinstance(getattr(base, "decoder", None), nn.Module):
        base = base.decoder  # the decoder-only wrappers of encoder-decoder families (Pegasus, Marian, ...) pass everything on
    return {key: value for key, value in encoded.items() if key in _accepted_inputs(type(base))}


@functools.cache
def _accepted_inputs(base_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(base_class.forward).parameters)


def is_causal(model: nn.Module) -> bool:
    return any(bool(getattr(m, "is_causal", False)) for m in attention_modules(model))
