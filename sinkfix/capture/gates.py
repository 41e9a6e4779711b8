"""Attention output gates: each head's mean gate value, read where the model computes it.

Gated attention (Qiu et al. 2025, arXiv 2505.06708; used by Qwen3-Next) multiplies each head's
attention output by ``sigmoid(g)``, a gate computed from the layer's input, before W_O. A gate
near 0 lets a head attend somewhere (often the first token) and still write nothing, which is the
job a sink does in an ungated model; so a head's mean gate is reported beside its first-token mass.

The gate logits are read with a forward hook on the projection that produces them, so nothing is
computed twice. Layouts, per family (checked against the modeling code of transformers 5.24):
- ``query_halves`` (Qwen3-Next, Qwen3.5, Qwen4-exp): ``q_proj`` outputs [B, T, H, 2 d]; per head the
  first d are the query, the last d the gate logits (``torch.chunk(..., 2, dim=-1)``);
- ``per_head`` (LFM3's and Bailing-hybrid's ``g_proj``): [B, T, H], one gate logit per head.
A gate with d values per head is averaged over those d and over the sequence's real tokens.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

# model_type -> (path of the gate projection relative to the base model, layout)
_GATES = {
    "qwen3_next": ("layers.{l}.self_attn.q_proj", "query_halves"),
    "qwen3_5_text": ("layers.{l}.self_attn.q_proj", "query_halves"),
    "qwen3_5_moe_text": ("layers.{l}.self_attn.q_proj", "query_halves"),
    "qwen4_exp_text": ("layers.{l}.self_attn.q_proj", "query_halves"),
    "lfm3": ("layers.{l}.self_attn.g_proj", "per_head"),
    "bailing_hybrid": ("layers.{l}.self_attn.g_proj", "per_head"),
}


@dataclass(frozen=True)
class Gates:
    """Where one loaded model's attention gates are: the projection of each attention layer."""

    layout: str
    modules: dict[int, nn.Module]  # model layer number -> the projection whose output holds the gate logits
    n_heads: int


def find_gates(base: nn.Module, model_type: str, layers: Sequence[int]) -> Gates | None:
    """The gate projections of ``layers``, or None for a model without an attention output gate."""
    if model_type not in _GATES:
        return None
    pattern, layout = _GATES[model_type]
    try:
        modules = {layer: base.get_submodule(pattern.format(l=layer)) for layer in layers}
    except AttributeError:
        return None  # this checkpoint was built without the gate (LFM3's use_attention_gate=False)
    if any(m is None for m in modules.values()):
        return None
    n_heads = int(base.config.num_attention_heads)
    return Gates(layout, modules, n_heads)


def head_gates(output: torch.Tensor, layout: str, n_heads: int) -> torch.Tensor:
    """The projection's output [B, T, ...] -> each head's gate value, mean over its d values [B, T, H]."""
    batch, length = output.shape[:2]
    if layout == "query_halves":
        per_head = output.reshape(batch, length, n_heads, -1)
        logits = per_head[..., per_head.shape[-1] // 2:]
    elif layout == "per_head":
        logits = output.reshape(batch, length, n_heads, 1)
    else:
        raise ValueError(f"unknown gate layout {layout!r}")
    return torch.sigmoid(logits.float()).mean(dim=-1)


class GateRecorder:
    """Sums each head's gate over each sequence's real tokens, layer by layer (right padding)."""

    def __init__(self, gates: Gates, lengths: Sequence[int]) -> None:
        self.gates = gates
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.sums: dict[int, torch.Tensor] = {}  # layer -> [B, H] on the CPU

    def add(self, layer: int, output: torch.Tensor) -> None:
        values = head_gates(output.detach(), self.gates.layout, self.gates.n_heads)  # [B, T, H]
        real = torch.arange(values.shape[1], device=values.device)[None, :] < self.lengths.to(values.device)[:, None]
        self.sums[layer] = torch.where(real[..., None], values, 0.0).sum(dim=1).cpu()

    def sequence(self, index: int) -> torch.Tensor:
        """Sequence ``index``'s mean gate per (attention layer, head) [L_attn, H], layers ascending."""
        n = int(self.lengths[index])
        return torch.stack([self.sums[layer][index] / n for layer in sorted(self.sums)])


@contextmanager
def recording(gates: Gates | None, lengths: Sequence[int]) -> Iterator[GateRecorder | None]:
    """Hooks on the gate projections for the forwards run inside the block (None: no gate, no hooks)."""
    if gates is None:
        yield None
        return
    recorder = GateRecorder(gates, lengths)
    hooks = [module.register_forward_hook(lambda _m, _a, out, layer=layer: recorder.add(layer, out))
             for layer, module in gates.modules.items()]
    try:
        yield recorder
    finally:
        for hook in hooks:
            hook.remove()
