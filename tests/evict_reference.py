"""Independent implementations the eviction tests compare against: one full forward of context + question
+ answer in which the question and answer queries are masked from the evicted keys per (layer, KV head),
plain eager attention written out here (no KV cache, no pruning, no SinkFix attention function), and
the dense attention maps and keys a prefill produces, for the scorers' dense references."""
from __future__ import annotations

from pathlib import Path

import torch

import sinkfix
from sinkfix.capture import attention


def tiny_llama(root: Path, layers: int = 3) -> sinkfix.LoadedModel:
    """A random-weight Llama with grouped-query attention (4 query heads over 2 KV heads), loaded for real."""
    import transformers as tf

    from .tiny_models import _tokenizer

    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                            num_key_value_heads=2, intermediate_size=64, max_position_embeddings=1024)
    tf.LlamaForCausalLM(config).save_pretrained(root)
    _tokenizer(False).save_pretrained(root)
    return sinkfix.load_model(str(root))


class _Eager:
    """Eager attention written out: causal, and rows >= ``start`` see only the keys ``visible`` allows."""

    def __init__(self, start: int, visible: torch.Tensor | None) -> None:
        self.start, self.visible = start, visible  # visible [L, H_kv, start] bool, or None (dense)
        self.maps: dict[int, torch.Tensor] = {}
        self.keys: dict[int, torch.Tensor] = {}

    def __call__(self, module, query, key, value, mask, scaling, dropout, kwargs):
        layer, n = module.layer_idx, query.shape[2]
        groups = query.shape[1] // key.shape[1]
        keys, values = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        logits = (query @ keys.transpose(2, 3)) * scaling
        seen = torch.ones(n, n, dtype=torch.bool).tril()[None].repeat(query.shape[1], 1, 1)  # [H, n, n]
        if self.visible is not None:
            per_head = self.visible[layer].repeat_interleave(groups, dim=0)  # [H, start]
            seen[:, self.start:, : self.start] &= per_head[:, None, :]
        logits = logits.masked_fill(~seen[None], float("-inf"))
        probs = torch.softmax(logits.float(), dim=-1).to(query.dtype)
        self.maps[layer], self.keys[layer] = probs[0].detach().clone(), key[0].detach().clone()
        return (probs @ values).transpose(1, 2).contiguous(), None


def masked_answer_logits(loaded: sinkfix.LoadedModel, context: list[int], question: list[int], answer: list[int],
                         kept: torch.Tensor) -> torch.Tensor:
    """[len(answer), V] answer logits of one full forward, question/answer queries masked to ``kept``
    [L, H_kv, T] per (layer, KV head); the context's own queries stay dense."""
    ids = torch.tensor([context + question + answer[:-1]])
    handler = _Eager(len(context), kept)
    with torch.inference_mode(), attention.fusing(handler):
        hidden = loaded.base(input_ids=ids).last_hidden_state[0]
        first = len(context) + len(question) - 1
        return loaded.model.get_output_embeddings()(hidden[first: first + len(answer)]).float()


def dense_maps(loaded: sinkfix.LoadedModel, context: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """([L, H, T, T] attention probabilities, [L, H_kv, T, d] keys) of a dense forward of the context."""
    handler = _Eager(len(context), None)
    with torch.inference_mode(), attention.fusing(handler):
        loaded.base(input_ids=torch.tensor([context]))
    layers = sorted(handler.maps)
    return torch.stack([handler.maps[i] for i in layers]), torch.stack([handler.keys[i] for i in layers])
