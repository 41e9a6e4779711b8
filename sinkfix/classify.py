"""Sink classification rules. A rule is a small strategy object so others can sit beside the seed's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

BENEFICIAL = "beneficial"
DETRIMENTAL = "detrimental"
NEUTRAL = "neutral"
LABELS = (BENEFICIAL, DETRIMENTAL, NEUTRAL)


class Rule(Protocol):
    name: str

    def labels(self, att_received: np.ndarray, value_norm: np.ndarray) -> list[str]: ...


@dataclass(frozen=True)
class SeedRule:
    """The seed prototype's rule, kept as the default. It is a hypothesis, not a finding:
    the literature reads "high attention, low value norm" as a no-op sink that may be harmless,
    and ``sinkfix.evaluate`` is how a user tests it token by token.

    1. token 0 is beneficial;
    2. att_received >= tau_att and value_norm <= tau_norm is detrimental (both bounds inclusive);
    3. everything else is neutral.
    """

    tau_att: float
    tau_norm: float
    name: str = "seed"

    def labels(self, att_received: np.ndarray, value_norm: np.ndarray) -> list[str]:
        out = []
        for index, (att, norm) in enumerate(zip(att_received, value_norm)):
            if index == 0:
                out.append(BENEFICIAL)
            elif att >= self.tau_att and norm <= self.tau_norm:
                out.append(DETRIMENTAL)
            else:
                out.append(NEUTRAL)
        return out


def indices_with(labels: list[str], label: str) -> list[int]:
    return [i for i, got in enumerate(labels) if got == label]
