"""Corpus windows, the unit every 2025-findings figure averages over, and the estimate it reports.

A corpus is a text file (tinyshakespeare.txt in the data folder by default; any UTF-8 file by path).
Windows are consecutive, non-overlapping runs of its token ids from the start, built at the id level
(``sinkrate.natural_bodies``: no decode/re-encode), each wrapped in the tokenizer's own special tokens
and the BOS setting like every other SinkFix sequence. A window cut to length T keeps its first tokens,
so the lengths of a sweep see the same text growing.

Each figure is a mean over windows with a 95% percentile bootstrap CI (``sinkrate.bootstrap_ci``,
2000 resamples of the windows); with one window there is no interval, and the JSON says ``null``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sinkfix.errors import InputError, SettingsError
from sinkfix.experiments.sinkrate import bootstrap_ci, natural_bodies, wrapping
from sinkfix.models import LoadedModel
from sinkfix.policy.files import data_folders
from sinkfix.settings import BOS_MODES

CORPUS = "tinyshakespeare.txt"
# Fewer resampled units than this make a percentile bootstrap coarse; the estimate says so.
ROUGH_BELOW = 10


def default_corpus() -> Path:
    """tinyshakespeare.txt in the first data folder (``SINKFIX_DATA``, else ``../shared/data``)."""
    return data_folders()[0] / CORPUS


def read_corpus(path: str | Path | None) -> tuple[str, str]:
    """(text, the name results record: the file's name, never a directory path)."""
    target = Path(path) if path else default_corpus()
    try:
        return target.read_text(encoding="utf-8"), target.name
    except (OSError, UnicodeDecodeError) as error:
        hint = "" if path else "; set SINKFIX_DATA to the folder holding tinyshakespeare.txt, or give --file"
        raise InputError(f"cannot read {target}: {getattr(error, 'strerror', None) or error}{hint}") from None


@dataclass(frozen=True)
class Windows:
    """``bodies`` [n][body] id runs and the affixes that wrap them; ``at(k)`` gives every window at length k."""

    before: tuple[int, ...]
    after: tuple[int, ...]
    bodies: tuple[tuple[int, ...], ...]

    @property
    def longest(self) -> int:
        return len(self.before) + len(self.bodies[0]) + len(self.after)

    def at(self, length: int) -> list[list[int]]:
        body = length - len(self.before) - len(self.after)
        if body < 1 or body > len(self.bodies[0]):
            raise SettingsError(f"length {length} is outside 1..{self.longest} tokens for these windows")
        return [[*self.before, *b[:body], *self.after] for b in self.bodies]


def corpus_windows(loaded: LoadedModel, text: str, n: int, length: int, bos: str = "auto") -> Windows:
    """``n`` windows of ``length`` tokens (special tokens and BOS included) from the start of ``text``."""
    if n < 1:
        raise SettingsError(f"the number of windows must be at least 1, got {n}")
    if bos not in BOS_MODES:
        raise SettingsError(f"bos must be one of {', '.join(BOS_MODES)}, got {bos!r}")
    if length > loaded.max_tokens:
        raise SettingsError(f"length {length} is over {loaded.name}'s limit of {loaded.max_tokens} tokens")
    before, after = wrapping(loaded.tokenizer, bos)
    body = length - len(before) - len(after)
    if body < 2:
        raise SettingsError(f"length {length} leaves fewer than 2 tokens after the special tokens")
    if not text or not text.strip():
        raise InputError("the corpus is empty")
    bodies = natural_bodies(loaded.tokenizer, text, n, body)
    return Windows(tuple(before), tuple(after), tuple(tuple(b) for b in bodies))


def estimate(values: Sequence[float] | np.ndarray, seed: int = 0) -> dict:
    """``{"mean", "ci95", "n"}`` over windows; ``ci95`` is None with one value, and ``rough`` when n < 10."""
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if len(data) == 0:
        return {"mean": None, "ci95": None, "n": 0}
    out = {"mean": float(data.mean()), "ci95": list(bootstrap_ci(data, seed=seed)) if len(data) > 1 else None,
           "n": int(len(data))}
    if 1 < len(data) < ROUGH_BELOW:
        out["rough"] = True
    return out


def shown(entry: dict | None, digits: int = 3) -> str:
    """An estimate as text: "0.512 [0.480, 0.547]", the mean alone with one window, "—" when there is none."""
    if entry is None or entry.get("mean") is None:
        return "—"
    if entry.get("ci95") is None:
        return f"{entry['mean']:.{digits}f}"
    low, high = entry["ci95"]
    return f"{entry['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def batch_size(length: int, budget_tokens: int = 4096) -> int:
    """Windows per forward: short windows batch, long ones run alone (memory and time grow with B x T)."""
    return max(1, budget_tokens // max(length, 1))
