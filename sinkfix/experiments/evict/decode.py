"""The question and the answer on a pruned cache, at their original positions (T, T + 1, ...).

transformers builds one attention mask per forward, sized from layer 0's cache. After PyramidKV the
layers hold different numbers of keys, so that mask is wrong for every other layer (kvpress 0.5.5's
answer step failed there: "size of tensor a (915) must match ... (945)"). Here each layer builds its
own: every cached key is visible, and the new tokens see each other causally. Each layer then runs
plain softmax attention over its keys (SDPA, within float32 rounding of eager attention; the tests check
the logits against an independent masked forward).

Answers are scored by teacher forcing: one forward of the question and the answer, every answer
token's logits read at once (``answer_logits``); ``generate`` decodes greedily instead.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F
from transformers import DynamicCache

from sinkfix.capture import attention, keywords
from sinkfix.experiments.evict.capture import Prefill
from sinkfix.experiments.evict.compress import Kept, prune
from sinkfix.models import LoadedModel, devices

# Selections answered in one batched forward (their pruned caches stacked): 8 at T = 2,048 hold ~110 MB
# of SmolLM2 keys and values at ratio 0.5.
GROUP = 8


def tail_mask(n_new: int, n_keys: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[1, 1, n_new, n_keys] additive: the ``n_keys - n_new`` cached keys visible, the new ones causal."""
    mask = torch.zeros(1, 1, n_new, n_keys, dtype=dtype, device=device)
    future = torch.ones(n_new, n_new, dtype=torch.bool, device=device).triu(diagonal=1)
    mask[0, 0, :, n_keys - n_new:].masked_fill_(future, torch.finfo(dtype).min)
    return mask


def _cached_attention(module, query, key, value, mask, scaling, dropout, kwargs):
    """Each layer's own mask from its own cache length (the one transformers built is layer 0's).

    Plain softmax attention runs as one SDPA call with GQA (no repeated keys: a batch of pruned
    caches is mostly keys); anything eager attention does beyond it (soft-capping, learned sinks,
    a position bias, another normaliser) runs SinkFix's attention function instead."""
    own = tail_mask(query.shape[2], key.shape[2], query.dtype, query.device)
    softcap, sinks, bias = keywords.extras(module, kwargs)
    if softcap is None and sinks is None and bias is None and keywords.normaliser(module, kwargs, sinks) is None:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=own, scale=scaling,
                                             enable_gqa=key.shape[1] != query.shape[1])
        return out.transpose(1, 2).contiguous(), None
    with attention.fusing(None):
        return attention.sinkfix_attention(module, query, key, value, own, scaling, dropout, **kwargs)


def run_on_cache(loaded: LoadedModel, cache: DynamicCache, ids: torch.Tensor, start: int) -> torch.Tensor:
    """Final hidden states [B, n, D] of ``ids`` [B, n] at positions start.. on ``cache`` (which grows by them)."""
    device = devices.input_device(loaded.model)
    positions = torch.arange(start, start + ids.shape[1], device=device).expand(ids.shape[0], -1)
    with torch.inference_mode(), attention.fusing(_cached_attention):
        out = loaded.base(input_ids=ids.to(device), position_ids=positions, cache=cache, use_cache=True)
    return out.last_hidden_state


def _head(loaded: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return loaded.model.get_output_embeddings()(hidden).float()


def groups(kept: Sequence[Kept], size: int = GROUP) -> list[list[int]]:
    """Indices of ``kept`` in batches that share every layer's budget (so their caches stack), at most ``size`` each."""
    by_budget: dict[tuple[int, ...], list[int]] = {}
    for index, item in enumerate(kept):
        by_budget.setdefault(tuple(item.n_kept), []).append(index)
    return [members[i:i + size] for members in by_budget.values() for i in range(0, len(members), size)]


def answer_logits(loaded: LoadedModel, prefill: Prefill, kept: Sequence[Kept], question: Sequence[int],
                  answer: Sequence[int]) -> torch.Tensor:
    """[B, len(answer), V]: the logits that predict each answer token, teacher-forced in one forward, for a
    batch of selections with the same per-layer budgets (``groups``).

    The first answer token after an empty question is predicted by the context's last token, whose
    hidden state the prefill computed densely (eviction happens after it, as in kvpress)."""
    cache = prune(prefill.cache, kept, loaded.model.config)
    batch = len(kept)
    fed = list(question) + list(answer[:-1])
    hidden = prefill.last_hidden.expand(batch, 1, -1)
    if fed:
        ids = torch.tensor([fed], dtype=torch.long).expand(batch, -1)
        hidden = torch.cat([hidden, run_on_cache(loaded, cache, ids, prefill.n_tokens)], dim=1)
    return _head(loaded, hidden[:, len(question): len(question) + len(answer)])


def generate(loaded: LoadedModel, prefill: Prefill, kept: Sequence[Kept], question: Sequence[int],
             n_new: int) -> list[list[int]]:
    """Greedy decoding of ``n_new`` tokens after the question, one forward per token, for a batch as above."""
    cache = prune(prefill.cache, kept, loaded.model.config)
    batch, position = len(kept), prefill.n_tokens
    hidden = prefill.last_hidden.expand(batch, -1)
    if question:
        ids = torch.tensor([list(question)], dtype=torch.long).expand(batch, -1)
        hidden = run_on_cache(loaded, cache, ids, position)[:, -1]
        position += len(question)
    out: list[torch.Tensor] = []
    for step in range(n_new):
        token = _head(loaded, hidden).argmax(dim=-1)  # [B]
        out.append(token)
        if step + 1 < n_new:
            hidden = run_on_cache(loaded, cache, token[:, None].cpu(), position)[:, -1]
            position += 1
    return torch.stack(out, dim=1).tolist() if out else [[] for _ in kept]


def outcome(logits: torch.Tensor, answer: Sequence[int]) -> tuple[bool, float]:
    """One selection's [len(answer), V] logits -> (every answer token the argmax, mean answer NLL in nats)."""
    target = torch.tensor(list(answer), dtype=torch.long, device=logits.device)
    picked = torch.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
    return bool((logits.argmax(dim=-1) == target).all()), float(-picked.mean())
