"""Random-weight models of real shapes (SmolLM2-135M, Llama-3.2-1B), built from configs, no hub, no weights.

For timing and counting the weights do not matter, only the shapes: the GPU machines have no
model weights (SmolLM2's package is 93 MB, more than a run may carry), and the budget tests need a
30-layer model without loading SmolLM2. The tokenizer is word-level over ``w0 w1 ...``, so
``text(n)`` is exactly n tokens.
"""
from __future__ import annotations

from pathlib import Path

# SmolLM2-135M's attention and widths (HuggingFaceTB/SmolLM2-135M config.json).
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, head_dim=64, vocab_size=49152, rope_theta=100000.0, rms_norm_eps=1e-5,
               tie_word_embeddings=True)
LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, head_dim=64, vocab_size=128256, rope_theta=500000.0, tie_word_embeddings=True,
                rms_norm_eps=1e-5)
SHAPES = {"smollm2": SMOLLM2, "llama-1b": LLAMA_1B}
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>"]


def text(n_tokens: int, seed: int = 0, vocab: int = 1000) -> str:
    """n_tokens words ``w<i>`` with i < vocab / 2 (in every vocabulary of that size; a deterministic
    pseudo-random walk)."""
    words, state = [], seed * 7919 + 1
    for _ in range(n_tokens):
        state = (state * 1103515245 + 12345) % 2**31
        words.append(f"w{state % (vocab // 2)}")
    return " ".join(words)


def _tokenizer(vocab_size: int, positions: int, words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(dict.fromkeys(SPECIALS + words))}
    vocab.update({f"w{i}": len(vocab) + i for i in range(vocab_size - len(vocab))})
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", model_max_length=positions)


def build(folder: Path, shape: str, positions: int, dtype: str = "float32", device: str = "cpu",
          words: list[str] | None = None, **overrides: object) -> Path:
    """Save a random-weight LlamaForCausalLM of ``shape`` (fields overridden by ``overrides``) and its tokenizer,
    whose vocabulary holds ``words`` (English prose tokenizes word by word) before ``w0 w1 ...``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    fields = {**SHAPES[shape], **overrides, "max_position_embeddings": positions}
    config = LlamaConfig(**fields, bos_token_id=2, eos_token_id=3, pad_token_id=1)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(folder)
    del model
    _tokenizer(int(fields["vocab_size"]), positions, list(words or [])).save_pretrained(folder)
    return folder
