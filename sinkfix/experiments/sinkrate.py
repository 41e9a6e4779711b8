"""The sink-emergence protocol of Gu et al. (ICLR 2025, "When attention sink emerges").

Sink₁^ε is the fraction of (layer, head) pairs whose visible-query mean α[l, h, j] exceeds ε for the
first token. Gu et al. number tokens from 1, so their Sink₁ is SinkFix's token index 0.

Three kinds of input, all built at the token-id level (no decode/re-encode round trip, which would
merge or split tokens and change the length):
- natural: consecutive, non-overlapping windows of a text file's token ids;
- random: ids drawn uniformly from the ordinary vocabulary (special and added tokens excluded);
- repeated: one ordinary id, drawn per sequence, repeated.
The tokenizer's own special affixes ([CLS] ... [SEP] for BERT, nothing for SmolLM2) wrap each body,
then the BOS setting applies, so every sequence has exactly ``length`` tokens and a batch needs no padding.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sinkfix.progress import Step
from sinkfix.analysis import metrics
from sinkfix.analysis.tokens import bos_ids
from sinkfix.capture.attention import observing
from sinkfix.capture.observers import add_columns
from sinkfix.errors import InputError, SettingsError
from sinkfix.experiments.chunks import special_affixes
from sinkfix.experiments.effects import BOOTSTRAP_SAMPLES
from sinkfix.models import LoadedModel, model_inputs
from sinkfix.settings import BOS_MODES, DEFAULT_EPSILON

KINDS = ("natural", "random", "repeated")
# Gu et al. 2025, Sink₁^ε in %, ε = 0.3, T = 64, 100 sequences.
PAPER = {
    "Llama-3-8B": {"natural": 99.02, "random": 91.23, "repeated": 0.00},
    "GPT-2-XL": {"natural": 77.00, "random": 70.29, "repeated": 62.28},
}
DEFAULT_BATCH = 16
# A result keeps this many tokens of the first sequence, no more of the input text (docs/security.md).
EXAMPLE_TOKENS = 8


class ReceivedObserver:
    """Per-layer attention received by each key of each sequence of a batch, [B, H, T].

    Sums probabilities over query rows block by block (the observer contract hands a layer's
    query blocks in order), then divides by T: the mean over all queries, as ``metrics.received``.
    """

    def __init__(self) -> None:
        self.sums: dict[int, torch.Tensor] = {}
        self.rows: dict[int, int] = {}

    def observe(self, layer: int | None, probs: torch.Tensor, value: torch.Tensor, scores: torch.Tensor,
                start: int = 0, sink_mass: torch.Tensor | None = None) -> None:
        if layer is None:
            raise RuntimeError("attention module has no layer index; load the model with sinkfix.load_model")
        if start == 0:
            self.sums[layer] = torch.zeros(*probs.shape[:2], value.shape[-2], dtype=torch.float32, device=probs.device)
            self.rows[layer] = 0
        add_columns(self.sums[layer], probs.float().sum(dim=-2))
        self.rows[layer] += probs.shape[-2]

    def received(self) -> torch.Tensor:
        """[L, B, H, T], layers in order."""
        return torch.stack([self.sums[i] / self.rows[i] for i in sorted(self.sums)])


# ---------------------------------------------------------------- building sequences


def ordinary_ids(tokenizer: object) -> np.ndarray:
    """Every id except special and added tokens (<|im_start|>, [CLS], ...): what random draws use."""
    excluded = set(getattr(tokenizer, "all_special_ids", []) or [])
    excluded |= set(tokenizer.get_added_vocab().values()) if hasattr(tokenizer, "get_added_vocab") else set()
    return np.array([i for i in range(len(tokenizer)) if i not in excluded], dtype=np.int64)


def natural_bodies(tokenizer: object, text: str, n: int, body: int) -> list[list[int]]:
    """``n`` consecutive, non-overlapping windows of ``body`` token ids from ``text``.

    Only a prefix of the text is tokenized when it is long enough (a few characters per token).
    """
    needed = n * body
    prefix = 8 * needed
    while True:
        ids = tokenizer(text[:prefix], add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) > needed or prefix >= len(text):
            break
        prefix *= 2
    if len(ids) < needed:
        raise InputError(f"the text holds {len(ids)} tokens: {n} windows of {body} need {needed}")
    return [ids[k * body:(k + 1) * body] for k in range(n)]


def wrapping(tokenizer: object, bos: str) -> tuple[list[int], list[int]]:
    """The ids every sequence body is wrapped in: the tokenizer's own special affixes, then the BOS rule."""
    before, after = special_affixes(tokenizer)
    return bos_ids(tokenizer, before + [-1], bos)[:-1], after  # -1 stands for the body in the BOS rule


def build_sequences(loaded: LoadedModel, kind: str, n: int, length: int, text: str | None = None,
                    bos: str = "auto", seed: int = 0) -> list[list[int]]:
    """``n`` id sequences of exactly ``length`` tokens of one kind, special affixes and BOS included."""
    tokenizer = loaded.tokenizer
    before, after = wrapping(tokenizer, bos)
    body = length - len(before) - len(after)
    if body < 1:
        raise SettingsError(f"length {length} leaves no room for tokens after the special tokens")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    if kind == "natural":
        if not text or not text.strip():
            raise InputError("natural sequences need a text: give --text-file")
        bodies = natural_bodies(tokenizer, text, n, body)
    elif kind == "random":
        bodies = rng.choice(ordinary_ids(tokenizer), size=(n, body)).tolist()
    elif kind == "repeated":
        bodies = [[int(i)] * body for i in rng.choice(ordinary_ids(tokenizer), size=n)]
    else:
        raise SettingsError(f"unknown kind {kind!r}: choose from {', '.join(KINDS)}")
    return [before + list(b) + after for b in bodies]


# ---------------------------------------------------------------- measuring


def first_token_rates(alpha: torch.Tensor, epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From α [L, B, H, T]: Sink₁ per sequence [B], per layer and sequence [B, L], and Sink_j per sequence [B, T]."""
    above = (alpha > epsilon).float()
    per_sequence = np.array([float(metrics.sink_rate(alpha[:, b], epsilon)[0]) for b in range(alpha.shape[1])])
    per_layer = above[..., 0].mean(dim=-1).T.numpy()
    per_position = above.mean(dim=(0, 2)).numpy()
    return per_sequence, per_layer, per_position


def measure(loaded: LoadedModel, sequences: Sequence[Sequence[int]], epsilon: float = DEFAULT_EPSILON,
            batch_size: int = DEFAULT_BATCH, step: Callable[[], None] | None = None):
    """Batched forwards of equal-length sequences -> (Sink₁ [n], per layer [n, L], Sink_j [n, T])."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(sequences), batch_size):
        ids = torch.tensor([list(s) for s in sequences[start:start + batch_size]])
        observer = ReceivedObserver()
        with torch.inference_mode(), observing(observer):
            loaded.base(**model_inputs(loaded.model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}))
        alpha = metrics.visible_query_mean(observer.received(), loaded.is_causal)
        parts.append(first_token_rates(alpha, epsilon))
        if step is not None:
            step()
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def bootstrap_ci(values: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% percentile CI of the mean, resampling sequences with replacement."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class KindRate:
    kind: str
    n: int
    rate: float  # Sink₁^ε, mean over sequences, in [0, 1]
    ci95: tuple[float, float]
    per_layer: list[float]  # share of each layer's heads with α > ε on token 0, mean over sequences
    per_position: list[float]  # Sink_j^ε for every index j, mean over sequences
    example: list[str]  # the first sequence's first EXAMPLE_TOKENS tokens, to see what was measured

    def to_json(self) -> dict:
        return {**self.__dict__, "ci95": list(self.ci95)}


@dataclass(frozen=True)
class SinkRateResult:
    model: str
    n: int
    length: int
    epsilon: float
    bos: str
    seed: int
    text_file: str | None
    kinds: dict[str, KindRate]
    # A hybrid's attention layers: the model layer number of each ``per_layer`` entry (None: every layer).
    attention_layers: list[int] | None = None

    def headline(self) -> float | None:
        first = next(iter(self.kinds.values()), None)
        return None if first is None else first.rate

    def to_json(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "kinds"}
        return {**data, "token": "index 0 (Gu et al.'s Sink_1)", "paper": PAPER,
                "kinds": {k: r.to_json() for k, r in self.kinds.items()}}


def sink_rate_protocol(model: LoadedModel, kinds: Sequence[str] = KINDS, n: int = 100, length: int = 64,
                       epsilon: float = DEFAULT_EPSILON, text_file: str | Path | None = None, seed: int = 0,
                       bos: str = "auto", batch_size: int = DEFAULT_BATCH, text: str | None = None,
                       progress: Step | None = None) -> SinkRateResult:
    """Sink₁^ε per input kind with bootstrap CIs over sequences, and per layer (Gu et al.'s protocol)."""
    _check(kinds, n, length, epsilon, bos, batch_size)
    if length > model.max_tokens:
        raise SettingsError(f"length {length} is over {model.name}'s limit of {model.max_tokens} tokens")
    if text is None and text_file is not None:
        try:
            text = Path(text_file).read_text(encoding="utf-8")
        except OSError as error:
            raise InputError(f"cannot read {text_file}: {error.strerror or error}") from None
    batches = math.ceil(n / batch_size)
    total, done = batches * len(kinds), 0
    results: dict[str, KindRate] = {}
    for kind in kinds:
        sequences = build_sequences(model, kind, n, length, text, bos, seed)

        def step() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total, kind)

        rates, per_layer, per_position = measure(model, sequences, epsilon, batch_size, step)
        results[kind] = KindRate(
            kind, n, float(rates.mean()), bootstrap_ci(rates, seed=seed), per_layer.mean(axis=0).tolist(),
            per_position.mean(axis=0).tolist(), model.tokenizer.convert_ids_to_tokens(sequences[0][:EXAMPLE_TOKENS]),
        )
    return SinkRateResult(model.name, n, length, float(epsilon), bos, seed,
                          None if text_file is None else str(text_file), results,
                          getattr(model, "attention_layers", None))


def _check(kinds: Sequence[str], n: int, length: int, epsilon: float, bos: str, batch_size: int) -> None:
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise SettingsError(f"kinds must be among {', '.join(KINDS)}, got {', '.join(kinds) or 'none'}")
    if n < 2 or length < 2 or batch_size < 1:
        raise SettingsError("n and length must be at least 2, and the batch size at least 1")
    if not 0.0 <= epsilon <= 1.0:
        raise SettingsError(f"epsilon must be between 0 and 1, got {epsilon}")
    if bos not in BOS_MODES:
        raise SettingsError(f"bos must be one of {', '.join(BOS_MODES)}, got {bos!r}")
