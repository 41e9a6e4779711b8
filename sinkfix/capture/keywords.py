"""The keywords attention modules pass to SinkFix's attention function, and what each one means.

Every keyword either changes eager attention's arithmetic, and is then implemented (op for op) in
``sinkfix.capture.attention``, or is provably harmless because eager attention ignores it too.
Anything else is refused: a keyword silently ignored would be a wrong result.
"""
from __future__ import annotations

import torch
from torch import nn

from sinkfix.capture import normalisers
from sinkfix.errors import UnsupportedModelError

# Keywords transformers 5.24's attention modules pass besides (query, key, value, mask, scaling,
# dropout). Three change eager attention's arithmetic and are implemented in capture.attention, op for op:
#   softcap        Gemma 2, T5Gemma, VaultGemma: logits -> tanh(logits / c) * c, before the mask.
#   s_aux          gpt-oss and other learned-sink models: one logit per head, a virtual key column.
#   sinks          per-query sink logits [B, H, Tq, 1] (Inkling 2): the same virtual column.
#   position_bias  T5-style relative bias [B|1, H, Tq, Tk], added before the mask.
#   normaliser     "softmax" (the default), "sigmoid", "relu" or "softpick" (SinkFix's lab models;
#                  the arithmetic is in capture.normalisers).
# The others are safe to accept whatever their value, because eager attention itself ignores them
# (the output then equals eager's by construction); each is listed with the reason:
ACCEPTED_KEYWORDS: dict[str, str] = {
    "sliding_window": "the window is in the additive mask (eager_mask is registered with this function)",
    "is_causal": "causality is in the additive mask; only SDPA and flash kernels read the flag",
    "position_ids": "positions were already applied to the queries and keys (rotary embeddings)",
    "cache_position": "cache bookkeeping; the mask already reflects it",
    "use_cache": "cache bookkeeping, no arithmetic",
    "past_key_values": "the keys and values passed in already include the cache",
    "output_attentions": "an output switch; the weights are returned either way",
    "output_hidden_states": "an output switch of the model, not of attention",
    "output_router_logits": "a mixture-of-experts output switch",
    "num_items_in_batch": "loss normalisation, not attention",
    "cu_seq_lens_q": "flash-attention packing metadata; eager relies on the mask",
    "cu_seq_lens_k": "flash-attention packing metadata; eager relies on the mask",
    "max_length_q": "flash-attention packing metadata; eager relies on the mask",
    "max_length_k": "flash-attention packing metadata; eager relies on the mask",
    "seq_idx": "packed-sequence index for state-space kernels, not attention",
    "indices": "sparse top-k indices for flash-MLA kernels; eager sees the same selection through the mask",
    "use_top_left_mask": "a flash-attention kernel flag",
    "softmax_scale": "the flash-attention name of the scale; eager uses `scaling`",
    "target_dtype": "the dtype flash attention casts to; eager keeps the model dtype",
    "deterministic": "a flash-attention kernel flag",
}
IMPLEMENTED_KEYWORDS = ("softcap", "s_aux", "sinks", "position_bias", "normaliser")


class UnsupportedKeywordError(UnsupportedModelError):
    """An attention module passed a keyword that changes the arithmetic and is not implemented here."""


def extras(module: nn.Module, kwargs: dict[str, object]) -> tuple[float | None, torch.Tensor | None,
                                                                   torch.Tensor | None]:
    """(softcap, sink logits [B|1, H, Tq|1, 1], position bias) from the keywords; refuse unknown ones."""
    for name, value in kwargs.items():
        if value is not None and name not in ACCEPTED_KEYWORDS and name not in IMPLEMENTED_KEYWORDS:
            raise UnsupportedKeywordError(
                f"{type(module).__name__} passes the attention keyword '{name}', which changes the arithmetic "
                f"of its attention and which SinkFix does not implement"
            )
    softcap = kwargs.get("softcap")
    sinks = kwargs.get("sinks")
    s_aux = kwargs.get("s_aux")
    if s_aux is not None and sinks is not None:
        raise UnsupportedKeywordError(f"{type(module).__name__} passes both 's_aux' and 'sinks' to its attention")
    if s_aux is not None:
        sinks = s_aux.reshape(1, -1, 1, 1)
    return softcap, sinks, kwargs.get("position_bias")


def normaliser(module: nn.Module, kwargs: dict[str, object], sinks: torch.Tensor | None) -> str | None:
    """The ``normaliser=`` keyword: None for softmax, else one of capture.normalisers'."""
    name = kwargs.get("normaliser")
    if name is None or name == "softmax":
        return None
    if name not in normalisers.NORMALISERS:
        raise UnsupportedKeywordError(f"{type(module).__name__} asks for the attention normaliser {name!r}; SinkFix "
                                      f"implements {', '.join(normalisers.NORMALISERS)}")
    if sinks is not None:
        raise UnsupportedKeywordError(f"{type(module).__name__} combines learned sinks with the {name} normaliser")
    return str(name)
