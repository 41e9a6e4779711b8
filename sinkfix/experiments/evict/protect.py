"""Sink protection, a wrapper any press takes: ``none``, ``first:N`` or ``detected``.

Protected keys are kept first and count inside the budget, so the ratio stays exact: a layer that
keeps n keys keeps its protected ones (the highest-scoring of them if there are more than n) and
fills the rest by score.

- ``first:N`` protects the context's first N positions, in every layer and KV head (kvpress's
  ``n_sink``: StreamingLLM, ExpectedAttention, KVzip).
- ``detected`` protects, per (layer, KV head), the tokens SinkFix's own statistics flag as sinks in
  that layer's prefill: visible-query mean α above ε in any query head of the group, with ε the
  analysis settings' sink threshold (0.3). A sink at any position, not only token 0. α of the last
  few keys is a mean over few queries, so a recent key a query attends strongly can be flagged too;
  the sweep reports how many keys each protection held.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sinkfix.errors import SettingsError
from sinkfix.settings import DEFAULT_EPSILON

KINDS = ("none", "first", "detected")


@dataclass(frozen=True)
class Protection:
    kind: str = "none"
    n: int = 0  # first:N
    epsilon: float = DEFAULT_EPSILON  # detected

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SettingsError(f"protection must be none, first:N or detected, got {self.kind!r}")
        if self.kind == "first" and (not isinstance(self.n, int) or self.n < 1):
            raise SettingsError(f"first:N protects the first N tokens, N a whole number >= 1; got {self.n!r}")
        if not 0 <= self.epsilon <= 1:
            raise SettingsError(f"the sink threshold epsilon must lie in [0, 1], got {self.epsilon}")

    @classmethod
    def parse(cls, text: str | Protection, epsilon: float = DEFAULT_EPSILON) -> Protection:
        """``none``, ``first:4``, ``detected``."""
        if isinstance(text, Protection):
            return text
        raw = str(text).strip()
        if raw.startswith("first:"):
            count = raw.split(":", 1)[1]
            if not count.isdigit():
                raise SettingsError(f"first:N needs a whole number N, got {raw!r}")
            return cls("first", int(count), epsilon)
        if raw in ("none", "detected"):
            return cls(raw, 0, epsilon)
        raise SettingsError(f"protection must be none, first:N or detected, got {raw!r}")

    @property
    def name(self) -> str:
        return f"first:{self.n}" if self.kind == "first" else self.kind

    def mask(self, alpha: torch.Tensor, n_kv_heads: int) -> torch.Tensor:
        """[H_kv, T] bool: the keys this protection keeps in a layer whose α is ``alpha`` [H, T]."""
        shape = (n_kv_heads, alpha.shape[-1])
        if self.kind == "detected":
            return detected(alpha, n_kv_heads, self.epsilon)
        protected = torch.zeros(shape, dtype=torch.bool)
        if self.kind == "first":
            protected[:, : self.n] = True
        return protected


def detected(alpha: torch.Tensor, n_kv_heads: int, epsilon: float) -> torch.Tensor:
    """[H_kv, T] bool: α > ε in any query head of the KV head's group."""
    flags = alpha > epsilon
    return flags.reshape(n_kv_heads, alpha.shape[0] // n_kv_heads, -1).any(dim=1)
