"""Token ids and the tokenizer a lab model is saved with, so ``sinkfix analyze`` reads text as training did.

Every sequence the lab trains on is ``[<reg0> ... <reg{k-1}>] <s> content...``: k learned register
tokens (the ``registers`` variant only), then the BOS token ``<s>``, then the task's tokens. The
saved tokenizer prepends the same prefix (a TemplateProcessing post-processor), so an analysis of
``"t3 t5 T7"`` or of Shakespeare sees exactly the positions the model was trained on. Ids:
``<s>`` 0, ``<pad>`` 1, ``<unk>`` 2, the registers 3.., then the task's content tokens, in order
(for SmolLM2's tokenizer the specials are appended after its own vocabulary instead).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOS, PAD, UNK = "<s>", "<pad>", "<unk>"


def register_names(k: int) -> list[str]:
    return [f"<reg{i}>" for i in range(k)]


@dataclass
class Vocab:
    """A task's tokenizer (a ``tokenizers.Tokenizer``) and how content ids map into the model's ids."""

    tokenizer: object  # tokenizers.Tokenizer, with the prefix post-processor
    content_offset: int  # model id of content id 0 (content ids are contiguous)
    n_registers: int
    bos_id: int
    pad_id: int
    register_ids: list[int]
    size: int
    max_length: int

    @property
    def prefix(self) -> list[int]:
        return [*self.register_ids, self.bos_id]

    def with_prefix(self, content: np.ndarray) -> np.ndarray:
        """[n, T] content ids -> [n, k + 1 + T] model ids with the registers and <s> in front."""
        body = content + self.content_offset
        prefix = np.broadcast_to(np.array(self.prefix, dtype=np.int64), (len(content), len(self.prefix)))
        return np.concatenate([prefix, body], axis=1)

    def save(self, directory: Path) -> None:
        from transformers import PreTrainedTokenizerFast

        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=self.tokenizer, bos_token=BOS, pad_token=PAD, unk_token=UNK,
            additional_special_tokens=register_names(self.n_registers), model_max_length=self.max_length,
        )
        wrapped.save_pretrained(directory)


def _with_prefix(tokenizer: object, n_registers: int, ids: dict[str, int]) -> None:
    from tokenizers import processors

    names = [*register_names(n_registers), BOS]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=" ".join([*names, "$A"]), pair=" ".join([*names, "$A", "$B"]),
        special_tokens=[(name, ids[name]) for name in names])


def _specials(n_registers: int) -> list[str]:
    return [BOS, PAD, UNK, *register_names(n_registers)]


def _build(model: object, content: list[str], n_registers: int, max_length: int, fuse: bool) -> Vocab:
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers

    specials = _specials(n_registers)
    tokenizer = Tokenizer(model)
    if not fuse:
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    else:
        tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([AddedToken(s, special=True) for s in specials])
    ids = {name: i for i, name in enumerate(specials)}
    _with_prefix(tokenizer, n_registers, ids)
    return Vocab(tokenizer, len(specials), n_registers, ids[BOS], ids[PAD], [ids[n] for n in register_names(n_registers)],
                 len(specials) + len(content), max_length)


def word_vocab(words: list[str], n_registers: int, max_length: int) -> Vocab:
    """Whitespace-separated symbols (Bigram-Backcopy's ``t12`` / ``T7``)."""
    from tokenizers import models

    table = {name: i for i, name in enumerate(_specials(n_registers) + words)}
    return _build(models.WordLevel(table, unk_token=UNK), words, n_registers, max_length, fuse=False)


def char_vocab(chars: list[str], n_registers: int, max_length: int) -> Vocab:
    """One token per character (a BPE model with no merges: every character is its own token)."""
    from tokenizers import models

    table = {name: i for i, name in enumerate(_specials(n_registers) + chars)}
    return _build(models.BPE(vocab=table, merges=[], unk_token=UNK), chars, n_registers, max_length, fuse=True)


def pretrained_vocab(tokenizer_file: Path, n_registers: int, max_length: int) -> Vocab:
    """A pretrained tokenizer (SmolLM2's) with the lab's specials appended after its vocabulary."""
    from tokenizers import AddedToken, Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    base = tokenizer.get_vocab_size(with_added_tokens=True)
    specials = _specials(n_registers)
    tokenizer.add_special_tokens([AddedToken(s, special=True) for s in specials])
    ids = {name: tokenizer.token_to_id(name) for name in specials}
    _with_prefix(tokenizer, n_registers, ids)
    # Content ids are the pretrained ids themselves: offset 0.
    return Vocab(tokenizer, 0, n_registers, ids[BOS], ids[PAD], [ids[n] for n in register_names(n_registers)],
                 max(base, *ids.values()) + 1, max_length)
