"""The two training tasks: Bigram-Backcopy sequences and tinyshakespeare windows, as model-id batches.

A batch is ``ids`` [n, k + 1 + T] (registers, ``<s>``, T content tokens) with ``scored`` [n, k + T]:
which next-token predictions count in the loss (every content target; the predictions made at the
register positions, of the next register, do not). Training batches are a pure function of
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from sinkfix import paths
from sinkfix.errors import InputError, SettingsError
from sinkfix.experiments.lab import backcopy
from sinkfix.experiments.lab.vocab import Vocab, char_vocab, pretrained_vocab, word_vocab

TASKS = ("backcopy", "text")
TOKENIZERS = ("char", "smollm2")
VALIDATION_SEQUENCES = 64
SHAKESPEARE = "tinyshakespeare.txt"
TRAIN_SHARE = 0.9  # the file's first 90% trains, the last 10% validates


def data_dir() -> Path:
    """``SINKFIX_DATA``, else the project's shared data beside the repository (``../shared/data``)."""
    return Path(os.environ.get("SINKFIX_DATA", paths.REPO_ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class Batch:
    ids: np.ndarray  # [n, L] model ids
    scored: np.ndarray  # [n, L - 1] bool: prediction at p (of token p + 1) is in the loss
    copies: np.ndarray | None = None  # [n, L - 1] bool: scored predictions of a backcopied token


@dataclass
class Task:
    name: str
    vocab: Vocab
    length: int  # content tokens per sequence
    describe: dict = field(default_factory=dict)  # what the JSON records about the task
    chain: backcopy.BackcopyChain | None = None
    train_ids: np.ndarray | None = None  # text: the encoded training split
    val_ids: np.ndarray | None = None

    def _scored(self, n: int) -> np.ndarray:
        scored = np.ones((n, self.vocab.n_registers + self.length), dtype=bool)
        scored[:, :self.vocab.n_registers] = False
        return scored

    def _batch(self, content: np.ndarray) -> Batch:
        ids = self.vocab.with_prefix(content)
        copies = None
        if self.chain is not None:
            k1 = self.vocab.n_registers + 1
            copies = np.zeros((len(content), ids.shape[1] - 1), dtype=bool)
            copies[:, k1 - 1:] = backcopy.copy_positions(content, self.chain)
        return Batch(ids, self._scored(len(content)), copies)

    def train_batch(self, seed: int, step: int, size: int) -> Batch:
        rng = np.random.default_rng([seed, step, 101])
        if self.chain is not None:
            return self._batch(backcopy.sample(self.chain, size, self.length, rng))
        starts = rng.integers(0, len(self.train_ids) - self.length, size=size)
        return self._batch(np.stack([self.train_ids[s:s + self.length] for s in starts]))

    def validation(self, n: int = VALIDATION_SEQUENCES) -> Batch:
        """The same held-out sequences for every run of the task (a fixed draw, or evenly spaced windows)."""
        if self.chain is not None:
            rng = np.random.default_rng([self.describe["task_seed"], 7919])
            return self._batch(backcopy.sample(self.chain, n, self.length, rng))
        starts = np.linspace(0, len(self.val_ids) - self.length - 1, n).astype(np.int64)
        return self._batch(np.stack([self.val_ids[s:s + self.length] for s in starts]))


def backcopy_task(length: int, n_registers: int, n_tokens: int = backcopy.DEFAULT_TOKENS,
                  n_triggers: int = backcopy.DEFAULT_TRIGGERS, alpha: float = backcopy.DEFAULT_ALPHA,
                  task_seed: int = backcopy.DEFAULT_TASK_SEED) -> Task:
    chain = backcopy.make_chain(n_tokens, n_triggers, alpha, task_seed)
    trigger = chain.is_trigger()
    words = [f"T{i}" if trigger[i] else f"t{i}" for i in range(n_tokens)]
    vocab = word_vocab(words, n_registers, n_registers + 1 + length)
    describe = {"task": "backcopy", "n_tokens": n_tokens, "n_triggers": n_triggers, "triggers": list(chain.triggers),
                "alpha": alpha, "task_seed": task_seed, "length": length}
    return Task("backcopy", vocab, length, describe, chain=chain)


@lru_cache(maxsize=2)
def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the text task's data {path}: {getattr(error, 'strerror', None) or error}; "
                         "set SINKFIX_DATA to the folder holding tinyshakespeare.txt") from None


def text_task(length: int, n_registers: int, tokenizer: str = "char", text_file: str | Path | None = None) -> Task:
    """tinyshakespeare, one token per character (``char``) or with SmolLM2's tokenizer (``smollm2``)."""
    if tokenizer not in TOKENIZERS:
        raise SettingsError(f"the text tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    path = Path(text_file) if text_file else data_dir() / SHAKESPEARE
    text = _read(str(path))
    max_length = n_registers + 1 + length
    if tokenizer == "char":
        chars = sorted(set(text))
        vocab = char_vocab(chars, n_registers, max_length)
        index = {c: i for i, c in enumerate(chars)}
        ids = np.array([index[c] for c in text], dtype=np.int64)
    else:
        from sinkfix.models.catalog import embedded_dir

        vocab = pretrained_vocab(embedded_dir("smollm2-135m", lambda message: None) / "tokenizer.json",
                                 n_registers, max_length)
        ids = np.array(vocab.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
    cut = int(len(ids) * TRAIN_SHARE)
    if cut <= length + 1 or len(ids) - cut <= length + 1:
        raise InputError(f"{path} holds {len(ids)} tokens, too few for windows of {length}")
    describe = {"task": "text", "file": path.name, "tokenizer": tokenizer, "length": length,
                "train_tokens": cut, "val_tokens": len(ids) - cut}
    return Task("text", vocab, length, describe, train_ids=ids[:cut], val_ids=ids[cut:])


def make_task(name: str, length: int, n_registers: int, tokenizer: str = "char",
              text_file: str | Path | None = None) -> Task:
    if name == "backcopy":
        return backcopy_task(length, n_registers)
    if name == "text":
        return text_task(length, n_registers, tokenizer, text_file)
    raise SettingsError(f"the task must be one of {', '.join(TASKS)}, got {name!r}")
