"""Where each architecture keeps its attention output projection W_O (for the norm-based contribution).

Paths are relative to the base model (``model.base_model``); ``{l}`` is the layer index. The
contribution ``||A v W_O||`` is only right when the module found consumes exactly ``probs @ V``;
the conformance sweep (``tests/conformance.py``) checks that for every architecture, and the
ones where something sits in between are listed in ``_NO_ADAPTER``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_OUTPUT_PROJECTION = {
    "bert": "encoder.layer.{l}.attention.output.dense",
    "roberta": "encoder.layer.{l}.attention.output.dense",
    "xlm-roberta": "encoder.layer.{l}.attention.output.dense",
    "electra": "encoder.layer.{l}.attention.output.dense",
    "distilbert": "transformer.layer.{l}.attention.out_lin",
    "gpt2": "h.{l}.attn.c_proj",
}
# Otherwise the first of these layouts the model has: LLaMA-family decoders (llama, mistral,
# qwen2, gemma, phi3, ...) first, then the other common names.
_CANDIDATES = (
    "layers.{l}.self_attn.o_proj",
    "layers.{l}.self_attn.out_proj",
    "layers.{l}.self_attn.dense",
    "layers.{l}.attention.o_proj",
    "layers.{l}.attn.o_proj",
    "h.{l}.attn.c_proj",
    "h.{l}.attn.out_proj",
    "h.{l}.self_attention.dense",
    "layers.{l}.attention.dense",
    "layers.{l}.attention.out_proj",
    "encoder.layer.{l}.attention.output.dense",
    "decoder.layers.{l}.self_attn.out_proj",
    "transformer.layer.{l}.attention.out_lin",
)
# Architectures whose attention output is gated, normalised or mixed before W_O: W_O alone does
# not give the contribution, so it is reported as unavailable (found by the conformance sweep).
# Gated attention (Qwen3-Next and its successors) multiplies each head's output by its gate first:
# the gate values are reported instead (sinkfix.capture.gates).
_NO_ADAPTER = frozenset({"afmoe", "beam", "bitnet", "hy_v4", "laguna",
                         "qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "qwen4_exp_text", "lfm3", "bailing_hybrid",
                         "axk2"})


def output_projection_modules(base: nn.Module, model_type: str, layers: int | Sequence[int]) -> list[nn.Module] | None:
    """The module applying W_O in each of ``layers`` (a count: layers 0..n-1; or a hybrid's attention
    layers), in that order, or None when the layout is unknown here."""
    if model_type in _NO_ADAPTER:
        return None
    numbers = range(layers) if isinstance(layers, int) else list(layers)
    patterns = (_OUTPUT_PROJECTION[model_type],) if model_type in _OUTPUT_PROJECTION else _CANDIDATES
    for pattern in patterns:
        try:
            modules = [base.get_submodule(pattern.format(l=layer)) for layer in numbers]
        except AttributeError:
            continue
        if all(isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 2 for m in modules):
            return modules
    return None


def output_projections(base: nn.Module, model_type: str, layers: int | Sequence[int]) -> dict[int, torch.Tensor] | None:
    """W_O in Linear layout [hidden, H * d] keyed by model layer number (attention layers only), or
    None when the layout is unknown."""
    numbers = range(layers) if isinstance(layers, int) else list(layers)
    modules = output_projection_modules(base, model_type, numbers)
    if modules is None:
        return None
    # GPT-2's Conv1D stores its weight as [in, out]; nn.Linear as [out, in].
    return {layer: m.weight.detach().T if type(m).__name__ == "Conv1D" else m.weight.detach()
            for layer, m in zip(numbers, modules)}
