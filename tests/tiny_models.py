"""Random-weight models of each supported architecture, built from small configs and saved to disk.

They exercise the real ``from_pretrained`` path without the hub. The tokenizer is a tiny
word-level one built here, so nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch

WORDS = "the a cat dog sat on mat sun is was and of to in it . , ! ? hello world probe sentence long text".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
VOCAB = SPECIALS + WORDS

ARCHITECTURES = ("bert", "roberta", "distilbert", "gpt2", "llama", "qwen2")


def _tokenizer(encoder: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(VOCAB)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    if encoder:
        core.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
            sep_token="[SEP]", mask_token="[MASK]", model_max_length=128,
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>",
        model_max_length=128,
    )


def _char_tokenizer():
    """Qwen2's AutoTokenizer always rebuilds a byte-level BPE, so give it one: single characters, no merges."""
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    symbols = ["<|endoftext|>", *"abcdefghijklmnopqrstuvwxyz.,!?", "\u0120"]  # \u0120 is byte-level space
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    return Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, model_max_length=128)


def _model(arch: str):
    import transformers as tf

    n = 64  # covers both tokenizers' vocabularies
    small = dict(vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=128)
    if arch == "bert":
        return tf.BertForMaskedLM(tf.BertConfig(**small))
    if arch == "roberta":
        return tf.RobertaModel(tf.RobertaConfig(**{**small, "max_position_embeddings": 130}, pad_token_id=0))
    if arch == "distilbert":
        return tf.DistilBertModel(tf.DistilBertConfig(vocab_size=n, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                      max_position_embeddings=128))
    if arch == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=n, n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=6, eos_token_id=6))
    if arch == "llama":  # 4 query heads sharing 2 KV heads: grouped-query attention
        return tf.LlamaForCausalLM(tf.LlamaConfig(**small, num_key_value_heads=2))
    if arch == "qwen2":
        return tf.Qwen2ForCausalLM(tf.Qwen2Config(**small, num_key_value_heads=2))
    raise ValueError(arch)


def build_tiny_model(arch: str, target: Path) -> Path:
    torch.manual_seed(0)
    model = _model(arch)
    model.save_pretrained(target)
    tokenizer = _char_tokenizer() if arch == "qwen2" else _tokenizer(arch in ("bert", "roberta", "distilbert"))
    tokenizer.save_pretrained(target)
    return target


# Hybrid models (attention in some layers only) and one with multi-head latent attention: built by
# the conformance table's builder (tests/tiny_configs.py), 4 layers with attention in 1 and 3.
HYBRIDS = ("qwen3_next", "jamba", "lfm2")


def build_conformance_model(model_type: str, target: Path) -> Path:
    """The conformance table's tiny model of ``model_type`` (query/key weights scaled up), saved."""
    from tests import conformance  # imported here: conformance imports this module's tokenizer

    conformance.build(conformance.by_type(model_type), target)
    return target
