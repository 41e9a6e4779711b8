"""Where each architecture keeps its attention output projection W_O (for the norm-based contribution).

Paths are relative to the base model (``model.base_model``); ``{l}`` is the layer index.
"""
from __future__ import annotations

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
# LLaMA-family decoders (llama, mistral, qwen2, gemma, phi3, ...) share this layout.
_DECODER_DEFAULT = "layers.{l}.self_attn.o_proj"


def output_projections(base: nn.Module, model_type: str, n_layers: int) -> list[torch.Tensor] | None:
    """W_O per layer in Linear layout [hidden, H * d], or None when the layout is unknown."""
    pattern = _OUTPUT_PROJECTION.get(model_type, _DECODER_DEFAULT)
    try:
        modules = [base.get_submodule(pattern.format(l=layer)) for layer in range(n_layers)]
    except AttributeError:
        return None
    # GPT-2's Conv1D stores its weight as [in, out]; nn.Linear as [out, in].
    return [m.weight.detach().T if type(m).__name__ == "Conv1D" else m.weight.detach() for m in modules]
